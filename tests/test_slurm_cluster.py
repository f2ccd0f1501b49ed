"""profiles/armis2 against a real single-node SLURM cluster (profiles/armis2/testcluster/start.sh).

What a dry-run cannot show: that sbatch accepts what the profile asks for (account, partition, CPUs,
memory, time, GPUs), that job states are tracked through accounting, that a job cancelled with scancel
or killed by its time limit is retried as the profile's `retries` says, and that the demo DAG run
through SLURM writes exactly what the local profile writes.

The cluster comes from Debian's packages (.ci/slurm-setup.sh) and needs root. Without them these tests
are skipped with the reason; set NEUROVFM_REQUIRE_SLURM=1 (CI) to turn a skip into a failure.
The cluster state lives in $NEUROVFM_SLURM_DIR (default /tmp/neurovfm-slurm); a cluster already
running there is reused and left running, one started here is stopped at the end.
"""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parent.parent
TESTCLUSTER = ROOT / "profiles" / "armis2" / "testcluster"
DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd")
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)")
# The first status check 2 s after a submission (plugin default: 40 s). After a check that finds no job finished
# the plugin waits 10 s longer than the last time, so a small job here (6-8 s with Python and Snakemake starting
# inside it) is seen at the second check, 14 s after its submission: one step of the DAG costs about 14 s. A first
# check at 8 s came before most such jobs had ended and found them at 26 s (measured: slower runs).
FAST_STATUS = ["--slurm-init-seconds-before-status-checks", "2"]


def _unavailable(reason: str):
    if os.environ.get("NEUROVFM_REQUIRE_SLURM") == "1":
        pytest.fail(f"SLURM test cluster required (NEUROVFM_REQUIRE_SLURM=1) but {reason}")
    pytest.skip(reason)


def _daemon_alive(state: Path, name: str) -> bool:
    pidfile = state / "run" / f"{name}.pid"
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False
    return name.encode() in cmdline


def _cluster_env(state: Path) -> dict:
    """The environment sbatch/snakemake need: parsed from the env.sh that start.sh writes."""
    env = dict(os.environ)
    for line in (state / "env.sh").read_text().splitlines():
        m = re.match(r'export (\w+)="(.*)"$', line.strip())
        if m:
            env[m.group(1)] = m.group(2)
    env["NEUROVFM_DEID_KEY"] = "slurm-integration-test-key"
    env.pop("SLURM_JOB_ID", None)
    return env


@pytest.fixture(scope="session")
def slurm_cluster():
    missing = [
        t
        for t in ("sbatch", "sacct", "slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd")
        if shutil.which(t) is None
    ]
    if missing:
        _unavailable(f"SLURM is not installed ({', '.join(missing)} missing; run .ci/slurm-setup.sh)")
    if os.geteuid() != 0:
        _unavailable("the SLURM test cluster needs root (slurmd launches the jobs)")
    state = Path(os.environ.get("NEUROVFM_SLURM_DIR", "/tmp/neurovfm-slurm"))
    was_running = all(_daemon_alive(state, d) for d in DAEMONS)
    res = subprocess.run(
        ["bash", str(TESTCLUSTER / "start.sh"), str(state)], capture_output=True, text=True, timeout=300
    )
    if res.returncode != 0:
        _unavailable(f"the SLURM test cluster did not start: {res.stderr.strip()[-2000:]}")
    env = _cluster_env(state)
    yield {
        "state": state,
        "env": env,
        "account": env["NEUROVFM_SLURM_ACCOUNT"],
        "partition": env["NEUROVFM_SLURM_PARTITION"],
        "gpu_model": env["NEUROVFM_SLURM_GPU_MODEL"],
    }
    if not was_running:
        subprocess.run(["bash", str(TESTCLUSTER / "stop.sh"), str(state)], capture_output=True, text=True, timeout=300)


def _snakemake(args, cwd: Path, env: dict, timeout: int, on_running=None):
    """Run snakemake; `on_running(proc_output_so_far)` is polled while it runs (may act on the cluster).
    Returns (returncode, combined output). A run past `timeout` is interrupted and reported as such."""
    log = cwd / f"snakemake-{time.monotonic_ns()}.out"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "snakemake", *args],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            if time.monotonic() > deadline:
                proc.terminate()  # snakemake cancels its SLURM jobs on SIGTERM
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                pytest.fail(f"snakemake did not finish within {timeout}s; output:\n{log.read_text()[-6000:]}")
            if on_running is not None:
                on_running(log.read_text())
            time.sleep(1)
    return proc.returncode, log.read_text()


def _sacct(env: dict, jobids) -> dict:
    """{jobid: (state, account, partition, alloc_tres)} of the allocations (no steps)."""
    res = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-j", ",".join(jobids), "-o", "JobIDRaw,State,Account,Partition,AllocTRES"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    table = {}
    for line in res.stdout.splitlines():
        jobid, state, account, partition, tres = line.split("|")
        table[jobid] = (state, account, partition, tres)
    return table


def _wait_for_accounting(env: dict, jobids, timeout=30) -> dict:
    """sacct rows once every job has reached a final state in the accounting database."""
    deadline = time.monotonic() + timeout
    while True:
        table = _sacct(env, jobids)
        final = all(j in table and table[j][0].split()[0] not in ("PENDING", "RUNNING", "COMPLETING") for j in jobids)
        if final or time.monotonic() > deadline:
            return table
        time.sleep(1)


def _rule_of_log(logfile: Path) -> str:
    """The rule of a SLURM log: .snakemake/slurm_logs/rule_<name>[/<wildcard values joined by _>]/<jobid>.log."""
    return next(p.name for p in Path(logfile).parents if p.name.startswith("rule_")).removeprefix("rule_")


def _submissions(output: str) -> list[tuple[str, str, Path]]:
    """(rule, slurm jobid, slurm log) of every sbatch submission snakemake reported."""
    return [(_rule_of_log(Path(log)), slurm_id, Path(log)) for _snakejob, slurm_id, log in SUBMITTED.findall(output)]


def _copy_profile(dest: Path) -> Path:
    profile = dest / "profiles" / "armis2"
    shutil.copytree(ROOT / "profiles" / "armis2", profile, ignore=shutil.ignore_patterns("testcluster"))
    return profile


# ---------------------------------------------------------------------------------------------------
# fault handling through the real scheduler
# ---------------------------------------------------------------------------------------------------
FAULT_SNAKEFILE = r"""
# Each rule appends its output in two pieces. Attempt 1 stalls after the first piece (the test cancels
# it, or the 1-minute time limit kills it); attempt 2 runs through. Appending (>>) means any piece
# left behind by attempt 1 would still be in the final file.
rule all:
    input: "out/cancelled.txt", "out/timeout.txt"

rule cancelled:
    output: "out/cancelled.txt"
    log: "logs/cancelled.log"
    resources:
        attempt_no=lambda wc, attempt: attempt,
        runtime=10,
        mem_mb=500,
        cpus_per_task=1,
    shell:
        "echo {resources.attempt_no} >> attempts_cancelled.txt; "
        "echo 'attempt {resources.attempt_no} piece 1' >> {output}; "
        "if [ {resources.attempt_no} -eq 1 ]; then sleep 600; fi; "
        "echo 'attempt {resources.attempt_no} piece 2' >> {output} 2> {log}"

rule timeout:
    output: "out/timeout.txt"
    log: "logs/timeout.log"
    resources:
        attempt_no=lambda wc, attempt: attempt,
        runtime=lambda wc, attempt: 1 if attempt == 1 else 10,
        mem_mb=500,
        cpus_per_task=1,
    shell:
        "echo {resources.attempt_no} >> attempts_timeout.txt; "
        "echo 'attempt {resources.attempt_no} piece 1' >> {output}; "
        "if [ {resources.attempt_no} -eq 1 ]; then sleep 600; fi; "
        "echo 'attempt {resources.attempt_no} piece 2' >> {output} 2> {log}"
"""


@pytest.fixture(scope="module")
def fault_run(slurm_cluster, tmp_path_factory):
    """One snakemake run through profiles/armis2: `cancelled` is scancel'ed by the test once its first
    piece is written; `timeout` runs into its 1-minute limit. Both must be retried and succeed."""
    work = tmp_path_factory.mktemp("slurm-faults")
    (work / "Snakefile").write_text(FAULT_SNAKEFILE)
    profile = _copy_profile(work)
    env = slurm_cluster["env"]
    cancelled = []

    def cancel_first_attempt(output: str):
        if cancelled:
            return
        piece = work / "out" / "cancelled.txt"
        if not piece.exists() or "attempt 1 piece 1" not in piece.read_text():
            return
        for rule, slurm_id, _log in _submissions(output):
            if rule == "cancelled":
                subprocess.run(["scancel", slurm_id], env=env, check=True)
                cancelled.append(slurm_id)
                return

    rc, output = _snakemake(
        ["--profile", str(profile), *FAST_STATUS, "all"],
        cwd=work,
        env=env,
        timeout=420,
        on_running=cancel_first_attempt,
    )
    return {
        "work": work,
        "rc": rc,
        "output": output,
        "cancelled": cancelled,
        "retries": yaml.safe_load((profile / "config.v8+.yaml").read_text())["retries"],
        "env": env,
    }


@pytest.mark.slow
@pytest.mark.parametrize("rule, failed_state", [("cancelled", "CANCELLED"), ("timeout", "TIMEOUT")])
def test_failed_job_is_retried_and_partial_output_discarded(fault_run, rule, failed_state):
    work, output = fault_run["work"], fault_run["output"]
    assert fault_run["rc"] == 0, output[-6000:]
    assert fault_run["retries"] >= 1, "the profile must retry jobs the scheduler killed"
    if rule == "cancelled":
        assert fault_run["cancelled"], "the test never saw attempt 1 running"
    # attempt 2 ran after attempt 1 was killed, and only attempt 2's pieces are in the output
    assert (work / f"attempts_{rule}.txt").read_text().split() == ["1", "2"]
    assert (work / "out" / f"{rule}.txt").read_text() == "attempt 2 piece 1\nattempt 2 piece 2\n"
    # both attempts went through sbatch; the scheduler recorded the kill and the success
    jobs = [slurm_id for r, slurm_id, _ in _submissions(output) if r == rule]
    assert len(jobs) == 2, output[-6000:]
    table = _wait_for_accounting(fault_run["env"], jobs)
    states = [table[j][0].split()[0] for j in jobs]
    assert states == [failed_state, "COMPLETED"], table


@pytest.mark.slow
def test_retried_run_is_complete_for_snakemake(fault_run):
    """Nothing left to do afterwards: the killed attempts are not remembered as incomplete outputs."""
    res = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "all"],
        cwd=fault_run["work"],
        env=fault_run["env"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Nothing to be done" in res.stdout + res.stderr


# ---------------------------------------------------------------------------------------------------
# GPU requests
# ---------------------------------------------------------------------------------------------------
GPU_SNAKEFILE = r'''
rule all:
    input: "out/gpu_model.txt", "out/gpu_any.txt"

rule gpu_model:
    """As the pretraining / feature-extraction rules will: GPUs and model from the profile."""
    output: "out/gpu_model.txt"
    resources:
        gpu=2,
        gpu_model="{model}",
        cpus_per_task=2,
        mem_mb=4000,
        runtime=5,
    shell: "echo \"$CUDA_VISIBLE_DEVICES\" > {output}"

rule gpu_any:
    output: "out/gpu_any.txt"
    resources:
        gpu=1,
        cpus_per_task=1,
        mem_mb=2000,
        runtime=5,
    shell: "echo \"$CUDA_VISIBLE_DEVICES\" > {output}"
'''


def _sbatch_call_options(call: str) -> str:
    """The sbatch options of a plugin call, without the wrapped job command."""
    return call.split(" --wrap=", 1)[0]


def test_gpu_request_builder_uses_gpus_not_gres():
    """The plugin's own command builder (no cluster needed): `gpu` + `gpu_model` resources become
    `--gpus=<model>:<n>`, `gpu` alone `--gpus=<n>`; no --gres, and --gres in slurm_extra is refused."""
    from types import SimpleNamespace

    from snakemake_interface_common.exceptions import WorkflowError
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string
    from snakemake_executor_plugin_slurm.validation import validate_slurm_extra

    class Resources(dict):
        __getattr__ = dict.__getitem__

    def job(**resources):
        return SimpleNamespace(
            resources=Resources(resources),
            threads=resources.get("cpus_per_task", 1),
            is_group=lambda: False,
            name="pretrain",
            wildcards={},
        )

    params = {
        "run_uuid": "u",
        "slurm_logfile": "l.log",
        "comment_str": "rule_pretrain",
        "account": " -A lab",
        "partition": " -p gpu",
        "workdir": "/w",
    }
    gpu_job = job(gpu=2, gpu_model="l40s", cpus_per_task=8, mem_mb=64000, runtime=600)
    call = get_submit_command(gpu_job, params) + set_gres_string(gpu_job)
    assert "--gpus=l40s:2" in call and "--gres" not in call
    assert "--cpus-per-gpu" in call or "--cpus-per-task" in call
    plain = job(gpu=1, cpus_per_task=4, mem_mb=8000, runtime=60)
    assert set_gres_string(plain) == " --gpus=1"
    with pytest.raises(WorkflowError, match="GRES"):
        validate_slurm_extra(job(slurm_extra="--gres=gpu:2", gpu=0))


def test_gpu_rules_are_scheduled_with_gpus(slurm_cluster, tmp_path):
    """Through sbatch on the test cluster (two fake GPUs of the configured model): the submitted call
    asks with --gpus, the scheduler allocates gres/gpu and exposes the devices to the job."""
    model = slurm_cluster["gpu_model"]
    (tmp_path / "Snakefile").write_text(GPU_SNAKEFILE.replace("{model}", model))
    profile = _copy_profile(tmp_path)
    env = slurm_cluster["env"]
    rc, output = _snakemake(
        ["--profile", str(profile), *FAST_STATUS, "--verbose", "all"], cwd=tmp_path, env=env, timeout=180
    )
    assert rc == 0, output[-6000:]
    calls = {
        m.group(1): _sbatch_call_options(m.group(0))
        for m in re.finditer(r"sbatch call: sbatch .*?--comment (\S+).*", output)
    }
    assert set(calls) == {"rule_gpu_model", "rule_gpu_any"}, output[-4000:]
    assert f"--gpus={model}:2" in calls["rule_gpu_model"]
    assert "--gpus=1" in calls["rule_gpu_any"]
    for call in calls.values():
        assert "--gres" not in call
        assert f"-A {slurm_cluster['account']}" in call and f"-p {slurm_cluster['partition']}" in call
    subs = {rule: slurm_id for rule, slurm_id, _ in _submissions(output)}
    table = _wait_for_accounting(env, list(subs.values()))
    assert table[subs["gpu_model"]][0] == "COMPLETED" and "gres/gpu=2" in table[subs["gpu_model"]][3]
    assert table[subs["gpu_any"]][0] == "COMPLETED" and "gres/gpu=1" in table[subs["gpu_any"]][3]
    assert (tmp_path / "out" / "gpu_model.txt").read_text().strip() == "0,1"
    assert (tmp_path / "out" / "gpu_any.txt").read_text().strip() in {"0", "1"}


# ---------------------------------------------------------------------------------------------------
# the demo DAG's CPU stages through SLURM, compared with profiles/local
# ---------------------------------------------------------------------------------------------------
SMALL_RUN = {
    "run": "slurmtest",
    "input": {"kind": "dicom", "dicom_dir": None, "reports_csv": None},
    "synth": {"n_studies": 6, "mr_matrix": [64], "ct_matrix": [64]},
    "splits": {"val_per_modality": 1},
    # one header job per ingest chunk, one preprocessing job per shard: a few, not paper.yaml's 64 and 109
    "ingest": {"chunks": 2},
    "store": {"shards": {"train": 2, "val": 1, "test": 1}},
}


# Everything up to the first GPU rule (pretrain): the CPU stages of the demo DAG.
CPU_TARGETS = [
    f"results/slurmtest/{t}"
    for t in (
        "labels/extractor_eval.csv",
        "labels/findings.jsonl",
        "shards/train/index.json",
        "shards/val/index.json",
        "shards/test/index.json",
        "figures/ed_dataset.png",
        "figures/ed_preprocessing.png",
        "figures/ed_masking.png",
    )
]


def _workflow_copy(dest: Path) -> Path:
    """The workflow as a user checks it out (Snakefile, config, rules, scripts, profiles)."""
    dest.mkdir(parents=True)
    for name in ("Snakefile", "config.yaml"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "workflow", dest / "workflow", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "profiles", dest / "profiles", ignore=shutil.ignore_patterns("testcluster"))
    (dest / "slurmtest.yaml").write_text(yaml.safe_dump(SMALL_RUN))
    return dest


@pytest.fixture(scope="module")
def demo_dag_runs(slurm_cluster, tmp_path_factory):
    base = tmp_path_factory.mktemp("slurm-demo")
    env = slurm_cluster["env"]
    local, remote = _workflow_copy(base / "local"), _workflow_copy(base / "slurm")
    started = time.monotonic()
    rc_local, out_local = _snakemake(
        [*CPU_TARGETS, "--profile", "profiles/local", "--configfile", "slurmtest.yaml"], cwd=local, env=env, timeout=240
    )
    t_local = time.monotonic() - started
    assert rc_local == 0, f"the local run failed, nothing to compare:\n{out_local[-6000:]}"
    started = time.monotonic()
    # the armis2 profile as users run it, with paper.yaml kept and this small run layered on top
    rc, out = _snakemake(
        [
            *CPU_TARGETS,
            "--profile",
            "profiles/armis2",
            *FAST_STATUS,
            "--configfile",
            "profiles/armis2/paper.yaml",
            "slurmtest.yaml",
        ],
        cwd=remote,
        env=env,
        timeout=600,  # 15 jobs, each a few seconds of start and up to 32 CPUs (four fit on the test node at once)
    )
    return {
        "local": local,
        "slurm": remote,
        "rc": rc,
        "output": out,
        "env": env,
        "seconds": {"local": t_local, "slurm": time.monotonic() - started},
    }


@pytest.mark.slow
def test_demo_dag_jobs_complete_in_slurm(demo_dag_runs, slurm_cluster):
    out = demo_dag_runs["output"]
    assert demo_dag_runs["rc"] == 0, out[-6000:]
    subs = _submissions(out)
    rules = {rule for rule, _, _ in subs}
    assert {"synth", "ingest", "labels", "extractor_eval", "preprocess", "fig_ed_masking"} <= rules, out[-4000:]
    table = _wait_for_accounting(demo_dag_runs["env"], [j for _, j, _ in subs])
    for rule, jobid, _ in subs:
        state, account, partition, _tres = table[jobid]
        assert state == "COMPLETED", (rule, jobid, table[jobid])
        assert account == slurm_cluster["account"] and partition == slurm_cluster["partition"]


@pytest.mark.slow
def test_demo_dag_outputs_equal_local_run(demo_dag_runs):
    assert demo_dag_runs["rc"] == 0, demo_dag_runs["output"][-6000:]
    local = demo_dag_runs["local"] / "results" / "slurmtest"
    remote = demo_dag_runs["slurm"] / "results" / "slurmtest"
    csvs = sorted(p.relative_to(local) for p in local.rglob("*.csv") if "pacs_export" not in p.parts)
    assert any(p.parts[0] == "ingest" for p in csvs) and any(p.parts[0] == "labels" for p in csvs), csvs
    assert csvs == sorted(p.relative_to(remote) for p in remote.rglob("*.csv") if "pacs_export" not in p.parts)
    different = [str(p) for p in csvs if (local / p).read_bytes() != (remote / p).read_bytes()]
    assert not different, f"SLURM and local runs differ in {different}"


@pytest.mark.slow
def test_demo_dag_logs_where_documented(demo_dag_runs):
    """Per-job SLURM logs under .snakemake/slurm_logs/rule_<name>/<jobid>.log (kept: the profile sets
    slurm-keep-successful-logs), rule logs under results/{run}/logs/<rule>.log."""
    work, out = demo_dag_runs["slurm"], demo_dag_runs["output"]
    assert demo_dag_runs["rc"] == 0, out[-6000:]
    logs = work / "results" / "slurmtest" / "logs"
    for rule, jobid, logfile in _submissions(out):
        rule_dir = work / ".snakemake" / "slurm_logs" / f"rule_{rule}"
        # a rule with wildcards (one job per chunk or shard): one folder per job, named by the wildcard values
        assert logfile.name == f"{jobid}.log" and logfile.parent in (rule_dir, *rule_dir.iterdir()), logfile
        assert logfile.is_file(), f"SLURM log of {rule} missing: {logfile}"
        assert f"rule {rule}:" in logfile.read_text()
        assert (logs / f"{rule}.log").is_file() or list(logs.glob(f"{rule}_*.log")), rule
