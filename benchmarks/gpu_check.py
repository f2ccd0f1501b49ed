"""GPU-ready pretraining check (issue 15, item 5), sized for one H100 and at most 8 minutes in all.

The check's configuration is config.yaml with the overlay ``profiles/gpu-check/gpu_check.yaml`` deep-merged over
it (and any ``--set`` JSON after that), so keys added to config.yaml later are inherited. It reads a built run's
train/val shards and label tables (``--run-dir``, default results/demo); features, checkpoints, stage results
and logs go to ``--work`` (a new /tmp folder by default) and a few summary files, flat, to ``--out`` ($OUT).

Stages, in this order, each a child process with its own timeout (clipped to what is left of ``--total-s``) and
its log in WORK/logs/; a stage that fails or times out is a row of the table, never an abort:

1. torch / CUDA: the torch, CUDA and attention kernels this python has. With ``--require-cuda`` and no CUDA
   device the check stops at once with one line (exit 2). Then the data: the run's shards and labels, or, with
   ``--build-demo`` on a machine without ``--run-dir`` (the device machine gets no results/), the demo built
   there by the workflow's own steps (synth, ingest, labels, preprocess; counted in the budget).
2. Training MFU per attention back end (``benchmarks/train_throughput.py``: the Vol-JEPA step of ``--mfu-model``,
   bf16 autocast on CUDA; a back end that is not installed is a row that says so).
3. Feature extraction throughput on MRI studies (``benchmarks/feature_throughput.py``; with CUDA also a CPU
   baseline row).
4. Features of train + val with random weights (the architecture of the first of ``pretrain.train``) and their
   pooled cross-validated probe score (``neurovfm.probes.pooled_cv``, as ``jepa_collapse.py --cv-only``).
5. Pretraining step time: a short run (``--calib-steps``) of the same settings; mean step time over its second
   half and its fixed cost (start-up, loader, final save) = wall time - sum of step times.
6. Pretraining for as many steps as fit: ``pretrain.steps`` is set before the run from the time left after
   reserving the stages that follow (the random encoder's measured features + CV times x ``--reserve-factor``,
   the context diagnostic's timeout, ``--margin-s``), so warm-up, cosine and EMA schedules span the whole run.
7. Features and CV score of the pretrained encoder, and its difference from random weights per modality.
8. The anatomy context diagnostic (``--context-script``, when that file exists) for random and pretrained.

The table (check, value, goal, status) is printed last. OUT holds gpu_check.csv (the rows), gpu_check.json (rows
with every stage's details), gpu_check_logs.txt (all stage logs), pretrain_metrics.csv and anatomy_context.csv
(when they exist): at most 5 files, as a device machine returns at most 8. Exit 0 once the table is printed,
whatever the statuses.

    bash benchmarks/gpu_pretrain_check.sh              # on the GPU machine (wraps this with --require-cuda)
    python benchmarks/gpu_check.py --out /tmp/gc ...   # any machine; see --help for the knobs
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


STAGES = ROOT / "benchmarks" / "gpu_check_stages.py"
TRAIN_THROUGHPUT = ROOT / "benchmarks" / "train_throughput.py"
FEATURE_THROUGHPUT = ROOT / "benchmarks" / "feature_throughput.py"
STATUSES = ("pass", "fail", "info", "skip", "error")
# what the stages import besides the standard library (checked first: one line, not a traceback, when one is missing;
# neurovfm's own imports are therefore inside the functions)
REQUIRED = ("torch", "numpy", "pandas", "yaml", "jsonschema", "sklearn", "iterstrat")
VALUE_WIDTH = 100  # characters of a value shown in the printed table


@dataclass
class Row:
    check: str
    value: str
    goal: str = "-"
    status: str = "info"
    detail: dict = field(default_factory=dict)


@dataclass
class Stage:
    """One child process: exit code (None: not started or killed at its timeout), wall seconds, log path."""

    name: str
    rc: int | None
    seconds: float
    timed_out: bool
    log: str

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.timed_out

    def why(self) -> str:
        """One line saying why the stage did not succeed (its timeout, or the last line of its log)."""
        if self.timed_out:
            return f"timed out after {self.seconds:.0f} s (log {self.log})"
        last = ""
        if Path(self.log).is_file():
            lines = [ln.strip() for ln in Path(self.log).read_text(errors="replace").splitlines() if ln.strip()]
            last = lines[-1] if lines else ""
        return f"exit {self.rc}: {last[:160]} (log {self.log})"


class Deadline:
    def __init__(self, total_s: float):
        self.t0, self.total = time.monotonic(), float(total_s)

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def remaining(self) -> float:
        return self.total - self.elapsed()


class Runner:
    """Runs stages as child processes (own process group, killed at the timeout), logs under ``work/logs``."""

    def __init__(self, work: Path, deadline: Deadline, python: str):
        self.work, self.deadline, self.python = work, deadline, python
        (work / "logs").mkdir(parents=True, exist_ok=True)
        self.stages: list[Stage] = []
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}

    def run(self, name: str, args: list[str], timeout_s: float) -> Stage:
        log = self.work / "logs" / f"{name}.log"
        timeout = min(float(timeout_s), self.deadline.remaining())
        if timeout < 1.0:
            stage = Stage(name, None, 0.0, False, str(log))
            log.write_text(f"not started: {self.deadline.remaining():.0f} s left of --total-s\n")
            self.stages.append(stage)
            return stage
        print(f"[{self.deadline.elapsed():6.1f} s] {name} (timeout {timeout:.0f} s)", flush=True)
        t0 = time.monotonic()
        with open(log, "w") as fh:
            fh.write("$ " + " ".join([self.python, *args]) + "\n")
            fh.flush()
            proc = subprocess.Popen(
                [self.python, *args],
                stdout=fh,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=self.env,
                start_new_session=True,
            )
            timed_out = False
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out, rc = True, None
                kill_group(proc)
        stage = Stage(name, rc, time.monotonic() - t0, timed_out, str(log))
        self.stages.append(stage)
        return stage


def kill_group(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """SIGTERM to the child's process group (loader workers included), SIGKILL if it is still there."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            continue


# -- configuration -----------------------------------------------------------------------------------------


def build_config(config: Path, overlay: Path | None, sets: list[str], run_dir: Path | None = None) -> dict:
    """config.yaml, the overlay and each ``--set`` JSON deep-merged in that order, validated. A model that the
    overlays add to ``pretrain.models`` starts from config.yaml's first ``pretrain.train`` model, so its options
    (position code, drop path, ...) follow the demo's unless the overlay sets them. With ``run_dir``, ``run`` and
    ``paths.results`` name the run the check reads (its de-identification key follows the run: the demo's key is
    accepted for ``run: demo`` only)."""
    import yaml

    from neurovfm.config import load_config, merged, validate

    cfg = load_config(config)
    template = cfg["pretrain"]["models"][cfg["pretrain"]["train"][0]]
    for extra in ([yaml.safe_load(Path(overlay).read_text()) or {}] if overlay is not None else []) + [
        json.loads(s) for s in sets
    ]:
        new = {
            k: merged(template, v)
            for k, v in extra.get("pretrain", {}).get("models", {}).items()
            if k not in cfg["pretrain"]["models"]
        }
        cfg = merged(cfg, extra)
        if new:
            cfg = merged(cfg, {"pretrain": {"models": new}})
    if run_dir is not None:
        cfg = merged(cfg, {"run": run_dir.name, "paths": {"results": str(run_dir.parent)}})
    return validate(cfg)


def write_config(cfg: dict, path: Path, **pretrain) -> Path:
    """``cfg`` with ``pretrain`` keys replaced, validated and written as YAML."""
    import yaml

    from neurovfm.config import merged, validate

    out = validate(merged(cfg, {"pretrain": pretrain})) if pretrain else cfg
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(out, sort_keys=False))
    return path


# -- environment -------------------------------------------------------------------------------------------


def torch_report() -> dict:
    import torch

    cuda = torch.cuda.is_available()
    return {
        "python": sys.executable,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda": cuda,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "device_count": torch.cuda.device_count() if cuda else 0,
        "flash_attn": importlib.util.find_spec("flash_attn") is not None,
        "torch_varlen": importlib.util.find_spec("torch.nn.attention.varlen") is not None,
    }


def env_row(rep: dict) -> Row:
    value = (
        f"torch {rep['torch']} (built for CUDA {rep['torch_cuda'] or 'none'}), device {rep['device']}, "
        f"flash_attn {'yes' if rep['flash_attn'] else 'no'}, "
        f"torch varlen {'yes' if rep['torch_varlen'] else 'no'}"
    )
    return Row("torch / CUDA", value, "a CUDA device", "pass" if rep["cuda"] else "info", rep)


# -- stages ------------------------------------------------------------------------------------------------

RUN_FILES = (
    "shards/train/index.json",
    "shards/train/stats.json",
    "shards/val/index.json",
    "labels/ct.csv",
    "labels/mri.csv",
)


def data_row(runner: Runner, args, run_dir: Path, work: Path) -> Row:
    """The run's shards and labels: present, or built here (``--build-demo`` and no ``--run-dir`` at all: a bare
    machine; a folder that exists is never written into, so a half-built run is reported, not overwritten)."""
    check, goal = f"data ({run_dir.name}: train/val shards, labels)", "present"
    missing = [f for f in RUN_FILES if not (run_dir / f).is_file()]
    if not missing:
        return Row(check, f"present in {run_dir}", goal, "pass")
    if run_dir.exists() or not args.build_demo:
        hint = "" if args.build_demo else "; --build-demo builds it when the folder does not exist"
        return Row(check, f"missing {', '.join(missing)} in {run_dir}{hint}", goal, "error")
    result = work / "demo_data.json"
    stage = runner.run(
        "demo_data",
        [
            str(STAGES),
            "demo-data",
            "--config",
            str(args.config),
            "--run-dir",
            str(run_dir),
            "--private-dir",
            str(args.private_dir or ROOT / "private" / run_dir.name),
            "--result",
            str(result),
        ],
        args.build_timeout_s,
    )
    data = read_json(result) if stage.ok else None
    if data is None:
        return Row(check, stage.why(), goal, "error")
    steps = ", ".join(f"{k} {v:.0f} s" for k, v in data["seconds"].items())
    return Row(check, f"built in {stage.seconds:.0f} s ({steps}; {data['workers']} processes)", goal, "pass", data)


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def mfu_rows(runner: Runner, args, work: Path) -> list[Row]:
    rows = []
    for backend in args.attn_backends:
        result = work / f"mfu_{backend}.json"
        cmd = [
            str(TRAIN_THROUGHPUT),
            str(result),
            "--model",
            args.mfu_model,
            "--attn-backends",
            backend,
            "--batch-sizes",
            *map(str, args.mfu_batch_sizes),
            "--steps",
            str(args.mfu_steps),
            "--warmup",
            str(args.mfu_warmup),
        ]
        if args.mfu_matmul_n:
            cmd += ["--matmul-n", str(args.mfu_matmul_n)]
        if args.spec_tflops:
            cmd += ["--spec-tflops", str(args.spec_tflops)]
        stage = runner.run(f"mfu_{backend}", cmd, args.mfu_timeout_s)
        check, goal = f"train MFU {args.mfu_model} {backend}", f">= {100 * args.mfu_goal:.0f}%"
        data = read_json(result) if stage.ok else None
        if data is None:
            rows.append(Row(check, stage.why(), goal, "error"))
            continue
        entry = data["backends"][0]
        if entry["status"] != "ok":
            rows.append(Row(check, entry["reason"], goal, "skip" if entry["status"] == "skipped" else "error", entry))
            continue
        timed = [r for r in entry["rows"] if not r["oom"]]
        if not timed:
            rows.append(Row(check, f"out of memory at batch {entry['rows'][0]['batch_size']}", goal, "error", entry))
            continue
        best = max(timed, key=lambda r: r["mfu"])
        mfu = best["mfu_spec"] if args.spec_tflops else best["mfu"]
        denom = (
            f"datasheet {args.spec_tflops:g}" if args.spec_tflops else f"measured matmul {data['matmul_tflops']:.3g}"
        )
        value = (
            f"{100 * mfu:.1f}% ({data['precision']}, batch {best['batch_size']}, "
            f"{1000 * best['step_s']:.0f} ms/step, "
            f"{best['tflops']:.3g} TFLOP/s of {denom})"
        )
        rows.append(
            Row(check, value, goal, "pass" if mfu >= args.mfu_goal else "fail", {"device": data["device_name"], **best})
        )
    return rows


def feature_throughput_rows(runner: Runner, args, work: Path, run_dir: Path, cfg_path: Path) -> list[Row]:
    result = work / "feature_throughput.json"
    cmd = [
        str(FEATURE_THROUGHPUT),
        str(result),
        "--index",
        str(run_dir / "shards/train/index.json"),
        "--stats",
        str(run_dir / "shards/train/stats.json"),
        "--config",
        str(cfg_path),
        "--model",
        args.ft_model,
        "--cpu-max-studies",
        str(args.ft_cpu_studies),
        "--work",
        str(work),
    ]
    if args.ft_max_studies:
        cmd += ["--max-studies", str(args.ft_max_studies)]
    result.unlink(missing_ok=True)
    stage = runner.run("feature_throughput", cmd, args.ft_timeout_s)
    check, goal = f"feature extraction {args.ft_model}, MRI studies/s", f">= {args.ft_goal:g}"
    data = read_json(result)  # written after each device: rows finished before a timeout count
    if data is None or not data["rows"]:
        return [Row(check, stage.why(), goal, "error")]
    rows = []
    for i, r in enumerate(data["rows"]):
        name = check if i == 0 else f"{check}, {r['device']} baseline"
        if "skipped" in r:
            rows.append(Row(name, r["skipped"], goal if i == 0 else "-", "skip", r))
            continue
        value = (
            f"{r['studies_per_s']:.2f} on {r['device_name']} ({r['s_per_study']:.3f} s/study, {r['studies']} "
            f"studies; encoder alone {r['encode_only_studies_per_s']:.1f}/s)"
        )
        status = ("pass" if r["studies_per_s"] >= args.ft_goal else "fail") if i == 0 else "info"
        rows.append(Row(name, value, goal if i == 0 else "-", status, r))
    if not stage.ok:
        rows.append(Row(f"{check}, next device", stage.why(), "-", "error"))
    return rows


def features_stage(
    runner: Runner,
    args,
    work: Path,
    run_dir: Path,
    cfg_path: Path,
    encoder: str,
    encoder_pt: Path | None,
    label: str,
    check: str,
) -> tuple[Row, Stage, Path]:
    feats, result = work / "features" / label, work / f"features_{label}.json"
    cmd = [
        str(STAGES),
        "features",
        "--config",
        str(cfg_path),
        "--run-dir",
        str(run_dir),
        "--encoder",
        encoder,
        "--out",
        str(feats),
        "--result",
        str(result),
        "--device",
        args.device,
    ]
    if encoder_pt is not None:
        cmd += ["--encoder-pt", str(encoder_pt)]
    stage = runner.run(f"features_{label}", cmd, args.features_timeout_s)
    data = read_json(result) if stage.ok else None
    if data is None:
        return Row(check, stage.why(), "completes", "error"), stage, feats
    splits = data["splits"]
    vols, toks = sum(s["volumes"] for s in splits.values()), sum(s["tokens"] for s in splits.values())
    return (
        Row(check, f"{vols} volumes, {toks} tokens in {stage.seconds:.1f} s", "completes", "pass", data),
        stage,
        feats,
    )


def cv_stage(
    runner: Runner, args, work: Path, run_dir: Path, cfg_path: Path, feats: Path, label: str, check: str
) -> tuple[Row, Stage, dict | None]:
    result = work / f"cv_{label}.json"
    cmd = [
        str(STAGES),
        "cv",
        "--config",
        str(cfg_path),
        "--run-dir",
        str(run_dir),
        "--features",
        str(feats),
        "--result",
        str(result),
        "--min-pos",
        str(args.cv_min_pos),
        "--folds",
        str(args.cv_folds),
        "--repeats",
        str(args.cv_repeats),
    ]
    stage = runner.run(f"cv_{label}", cmd, args.cv_timeout_s)
    data = read_json(result) if stage.ok else None
    if data is None:
        return Row(check, stage.why(), "completes", "error"), stage, None
    value = " / ".join(
        f"{m.upper()} {d['mean_auroc']:.3f} ({d['n_classes']} classes, {d['n_studies']} studies)"
        for m, d in data.items()
    )
    return Row(check, value, "completes", "pass", data), stage, data


def calibrate(runner: Runner, args, work: Path, run_dir: Path, cfg: dict, model: str) -> tuple[Row, dict | None]:
    """Short pretraining run with the check's settings: mean step time (second half) and fixed cost."""
    from neurovfm.config import ConfigError

    calib_dir, check = work / "calibrate", "pretrain step time"
    try:
        cfg_path = write_config(
            cfg, calib_dir / "config.yaml", steps=args.calib_steps, log_every=1, checkpoint_every=args.calib_steps
        )
    except ConfigError as err:
        return Row(check, str(err).replace("\n", " "), "measured", "error"), None
    stage = runner.run("pretrain_calibrate", pretrain_cmd(cfg_path, model, run_dir, calib_dir), args.calib_timeout_s)
    metrics = calib_dir / "metrics.csv"
    if not stage.ok or not metrics.is_file():
        return Row(check, stage.why(), "measured", "error"), None
    with open(metrics) as fh:
        step_s = [float(r["step_s"]) for r in csv.DictReader(fh)]
    half = step_s[len(step_s) // 2 :]
    per_step = sum(half) / len(half)
    fixed = max(stage.seconds - sum(step_s), 0.0)
    value = (
        f"{per_step:.3f} s/step (batch {cfg['pretrain']['batch_size']}, mean of steps {len(step_s) - len(half)}-"
        f"{len(step_s) - 1}), fixed cost {fixed:.1f} s"
    )
    calib = {"step_s": per_step, "fixed_s": fixed, "steps": len(step_s), "all_step_s": step_s}
    return Row(check, value, "measured", "pass", calib), calib


def pretrain_cmd(cfg_path: Path, model: str, run_dir: Path, work: Path) -> list[str]:
    return [
        "-m",
        "neurovfm.cli",
        "jepa",
        "train",
        "--config",
        str(cfg_path),
        "--model",
        model,
        "--index",
        str(run_dir / "shards/train/index.json"),
        "--stats",
        str(run_dir / "shards/train/stats.json"),
        "--out",
        str(work),
    ]


def plan_steps(
    remaining_s: float, reserve_s: float, calib: dict, min_steps: int, max_steps: int | None, slack: float = 1.0
) -> tuple[int, str]:
    """Steps that fit ``remaining_s - reserve_s`` (fixed cost first) at ``slack`` x the measured step time, capped
    by ``max_steps``; 0 when fewer than ``min_steps`` fit. Returns (steps, how they were chosen)."""
    budget = remaining_s - reserve_s - calib["fixed_s"]
    fit = int(math.floor(budget / (calib["step_s"] * slack))) if budget > 0 else 0
    if max_steps is not None and fit > max_steps:
        return max_steps, f"capped by --max-steps {max_steps} ({fit} would fit in {budget:.0f} s)"
    if fit < min_steps:
        return 0, f"only {fit} steps fit in {budget:.0f} s (--min-steps {min_steps})"
    return fit, f"{budget:.0f} s of steps left after reserving {reserve_s:.0f} s for the stages after it"


def pretrain_row(stage: Stage, work: Path, model: str, steps: int, how: str) -> Row:
    check = f"pretrain {model}"
    metrics, encoder = work / "metrics.csv", work / "encoder.pt"
    if not stage.ok or not encoder.is_file():
        return Row(check, stage.why(), "runs the planned steps", "error", {"steps": steps, "plan": how})
    with open(metrics) as fh:
        loss = [float(r["loss"]) for r in csv.DictReader(fh)]
    k = max(1, min(10, len(loss) // 4))
    first, last = sum(loss[:k]) / k, sum(loss[-k:]) / k
    value = f"{steps} steps in {stage.seconds:.0f} s, loss {first:.3f} -> {last:.3f} (means of {k}); {how}"
    return Row(
        check,
        value,
        "runs the planned steps",
        "pass",
        {"steps": steps, "plan": how, "seconds": stage.seconds, "loss_first": first, "loss_last": last},
    )


def difference_rows(model: str, random_cv: dict | None, trained_cv: dict | None) -> list[Row]:
    rows = []
    for mod in ("ct", "mri"):
        check = f"probe CV {mod.upper()}: {model} - random"
        if not random_cv or not trained_cv:
            rows.append(Row(check, "no score (see the CV rows)", "> 0", "skip"))
            continue
        a, b = trained_cv[mod]["mean_auroc"], random_cv[mod]["mean_auroc"]
        rows.append(
            Row(
                check,
                f"{a - b:+.3f} ({a:.3f} vs {b:.3f}; one run, no CI)",
                "> 0",
                "pass" if a > b else "fail",
                {"trained": a, "random": b},
            )
        )
    return rows


def context_row(
    runner: Runner, args, work: Path, run_dir: Path, cfg_path: Path, model: str, encoder_pt: Path | None, device: str
) -> Row:
    check = "anatomy context diagnostic"
    script = Path(args.context_script)
    if not script.is_file():
        return Row(check, f"{script} not present", "runs", "skip")
    if encoder_pt is None or not encoder_pt.is_file():
        return Row(check, "no pretrained encoder.pt", "runs", "skip")
    result = work / "anatomy_context.csv"
    cmd = [
        str(script),
        str(result),
        "--run-dir",
        str(run_dir),
        "--encoder",
        "random",
        "-",
        "--encoder",
        model,
        str(encoder_pt),
        "--device",
        device,
        "--config",
        str(cfg_path),  # the check's: the random encoder gets the pretrained architecture
        *shlex.split(args.context_extra),
    ]
    stage = runner.run("anatomy_context", cmd, args.context_timeout_s)
    if not stage.ok or not result.is_file():
        return Row(check, stage.why(), "runs", "error")
    with open(result) as fh:
        n = sum(1 for _ in csv.DictReader(fh))
    return Row(check, f"{n} rows in {result.name} ({stage.seconds:.0f} s)", "runs", "pass")


# -- table -------------------------------------------------------------------------------------------------


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def table(rows: list[Row]) -> str:
    """check, value (clipped: the CSV and JSON hold it whole), goal, status; one line per row."""
    head = ("check", "value", "goal", "status")
    cells = [head] + [(r.check, clip(r.value, VALUE_WIDTH), r.goal, r.status.upper()) for r in rows]
    w = [max(len(c[i]) for c in cells) for i in range(3)]
    lines = []
    for i, c in enumerate(cells):
        lines.append(f"{c[0]:<{w[0]}}  {c[1]:<{w[1]}}  {c[2]:<{w[2]}}  {c[3]}")
        if i == 0:
            lines.append("-" * (sum(w) + 12))
    return "\n".join(lines)


def write_outputs(out: Path, work: Path, rows: list[Row], runner: Runner, extra: dict) -> list[str]:
    """The few files that sum the check up, flat in ``out`` (a device machine returns at most 8 files): the rows
    (CSV, and JSON with every stage's details), all stage logs in one file, the pretraining metrics and the
    context diagnostic's CSV when they exist. Returns their names."""
    with open(out / "gpu_check.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["check", "value", "goal", "status"])
        w.writerows([r.check, r.value, r.goal, r.status] for r in rows)
    (out / "gpu_check.json").write_text(
        json.dumps(
            {**extra, "rows": [asdict(r) for r in rows], "stages": [asdict(s) for s in runner.stages]},
            indent=2,
            default=str,
        )
    )
    with open(out / "gpu_check_logs.txt", "w") as fh:
        for s in runner.stages:
            fh.write(f"===== {s.name}: exit {s.rc}, {s.seconds:.1f} s{', timed out' if s.timed_out else ''}\n")
            fh.write(Path(s.log).read_text(errors="replace") if Path(s.log).is_file() else "(no log)\n")
    kept = ["gpu_check.csv", "gpu_check.json", "gpu_check_logs.txt"]
    for src, name in (
        (work / "pretrain" / "metrics.csv", "pretrain_metrics.csv"),
        (work / "anatomy_context.csv", "anatomy_context.csv"),
    ):
        if src.is_file():
            shutil.copyfile(src, out / name)
            kept.append(name)
    return kept


# -- main --------------------------------------------------------------------------------------------------


def default_out() -> Path:
    return Path(os.environ.get("OUT") or f"/tmp/neurovfm-gpu-check-{time.strftime('%Y%m%d-%H%M%S')}")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--out", type=Path, help="folder of the summary files (default: $OUT, else /tmp/neurovfm-gpu-check-<time>)"
    )
    ap.add_argument(
        "--work",
        type=Path,
        help="folder of features, checkpoints, stage results and logs (default: a new /tmp/neurovfm-gpu-check-work-*)",
    )
    ap.add_argument(
        "--run-dir",
        type=Path,
        default=ROOT / "results/demo",
        help="built run with shards/{train,val} and labels/{ct,mri}.csv (default: results/demo)",
    )
    ap.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    ap.add_argument(
        "--overlay",
        type=Path,
        default=ROOT / "profiles/gpu-check/gpu_check.yaml",
        help="keys deep-merged over --config (default: profiles/gpu-check/gpu_check.yaml)",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="JSON",
        help='more keys deep-merged after the overlay, e.g. \'{"pretrain": {"batch_size": 32}}\'',
    )
    ap.add_argument("--require-cuda", action="store_true", help="stop at once (exit 2) when torch sees no CUDA")
    ap.add_argument(
        "--build-demo",
        action="store_true",
        help="when --run-dir does not exist (a bare machine), build the demo's shards and labels first "
        "(synth, ingest, labels, preprocess on all cores; counted in --total-s)",
    )
    ap.add_argument("--private-dir", type=Path, help="PHI-bearing folder of that build (default: private/<run>)")
    ap.add_argument("--build-timeout-s", type=float, default=240.0)
    ap.add_argument("--device", default="auto", help="device of the features stages: auto | cuda | cpu")
    ap.add_argument(
        "--total-s",
        type=float,
        default=465.0,
        help="wall-time budget of all stages together, s (default 465: 8 min with start-up)",
    )
    g = ap.add_argument_group("pretraining")
    g.add_argument("--calib-steps", type=int, default=30, help="steps of the step-time measurement run")
    g.add_argument("--calib-timeout-s", type=float, default=90.0)
    g.add_argument("--min-steps", type=int, default=20, help="fewer steps fitting than this: no pretraining")
    g.add_argument("--max-steps", type=int, help="cap on the planned steps (toy runs)")
    g.add_argument(
        "--step-slack",
        type=float,
        default=1.1,
        help="steps are planned at this x the measured step time (a slower stretch must still fit)",
    )
    g.add_argument(
        "--reserve-factor",
        type=float,
        default=1.25,
        help="the pretrained encoder's features + CV are reserved as the random one's times x this",
    )
    g.add_argument("--margin-s", type=float, default=10.0, help="spare seconds kept after the last stage")
    g = ap.add_argument_group("features and probes")
    g.add_argument("--features-timeout-s", type=float, default=90.0)
    g.add_argument("--cv-timeout-s", type=float, default=90.0)
    g.add_argument("--cv-min-pos", type=int, default=8, help="positives and negatives a class needs in the CV")
    g.add_argument("--cv-folds", type=int, default=5)
    g.add_argument("--cv-repeats", type=int, default=3)
    g.add_argument("--context-script", default=str(ROOT / "benchmarks/anatomy_context.py"))
    g.add_argument(
        "--context-timeout-s",
        type=float,
        default=90.0,
        help="the context diagnostic, both encoders (on 2 CPU cores with tiny encoders: about 3 min)",
    )
    g.add_argument("--context-extra", default="", help="more arguments of the context script, e.g. '--max-volumes 200'")
    g = ap.add_argument_group("training MFU (benchmarks/train_throughput.py)")
    g.add_argument("--attn-backends", nargs="+", default=["flash_attn", "torch_varlen", "sdpa_masked"])
    g.add_argument("--mfu-model", default="base", help="encoder size (default: base, the paper's ViT-B)")
    g.add_argument("--mfu-batch-sizes", type=int, nargs="+", default=[32])
    g.add_argument("--mfu-steps", type=int, default=5)
    g.add_argument("--mfu-warmup", type=int, default=2)
    g.add_argument("--mfu-matmul-n", type=int, help="side of the timed matmul (default: the script's)")
    g.add_argument("--mfu-goal", type=float, default=0.5)
    g.add_argument("--mfu-timeout-s", type=float, default=45.0, help="per back end")
    g.add_argument(
        "--spec-tflops",
        type=float,
        help="datasheet dense bf16 peak (e.g. 989 for an H100 SXM): MFU against it instead of the "
        "matmul rate measured in the same run",
    )
    g = ap.add_argument_group("feature extraction throughput (benchmarks/feature_throughput.py)")
    g.add_argument("--ft-model", default="base", help="encoder size (default: base, the paper's ViT-B)")
    g.add_argument("--ft-goal", type=float, default=100.0, help="MRI studies/s")
    g.add_argument(
        "--ft-max-studies",
        type=int,
        default=64,
        help="MRI studies timed, first of the train split (default 64, about 300 volumes; 0: all)",
    )
    g.add_argument("--ft-cpu-studies", type=int, default=4, help="studies of the CPU baseline after CUDA")
    g.add_argument("--ft-timeout-s", type=float, default=60.0)
    return ap


def pretrain_rows(
    runner: Runner, args, work: Path, run_dir: Path, cfg: dict, model: str, reserve_s: float
) -> tuple[list[Row], Path | None]:
    """Step time, then pretraining for the steps that fit what is left minus ``reserve_s``; (rows, encoder.pt)."""
    from neurovfm.config import ConfigError

    row, calib = calibrate(runner, args, work, run_dir, cfg, model)
    check, goal, pre = f"pretrain {model}", "runs the planned steps", work / "pretrain"
    if calib is None:
        return [row, Row(check, "no step time (see the row above)", goal, "skip")], None
    steps, how = plan_steps(
        runner.deadline.remaining(), reserve_s, calib, args.min_steps, args.max_steps, args.step_slack
    )
    if steps == 0:
        return [row, Row(check, how, goal, "skip")], None
    try:
        run_cfg = write_config(cfg, pre / "config.yaml", steps=steps)
    except ConfigError as err:
        return [row, Row(check, str(err).replace("\n", " "), goal, "error")], None
    stage = runner.run(
        "pretrain",
        pretrain_cmd(run_cfg, model, run_dir, pre),
        max(runner.deadline.remaining() - reserve_s + args.margin_s, 1.0),
    )
    return [row, pretrain_row(stage, pre, model, steps, how)], (pre / "encoder.pt" if stage.ok else None)


def trained_rows(
    runner: Runner, args, work: Path, run_dir: Path, cfg_path: Path, model: str, encoder_pt: Path | None
) -> tuple[list[Row], dict | None]:
    """Features and CV score of the pretrained encoder; (rows, CV result)."""
    label = f"pretrained {model}"
    checks = (f"features {label} (train + val)", f"probe CV mean AUROC, {label}")
    if encoder_pt is None:
        return [Row(c, "no pretrained encoder", "completes", "skip") for c in checks], None
    f_row, _, feats = features_stage(
        runner, args, work, run_dir, cfg_path, model, encoder_pt, f"pretrained_{model}", checks[0]
    )
    c_row, _, cv_trained = cv_stage(runner, args, work, run_dir, cfg_path, feats, f"pretrained_{model}", checks[1])
    return [f_row, c_row], cv_trained


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    missing = [m for m in REQUIRED if importlib.util.find_spec(m) is None]
    if missing:
        print(
            f"gpu_check: python {sys.executable} lacks {', '.join(missing)} (benchmarks/RESULTS.md: GPU check)",
            flush=True,
        )
        return 2
    rep = torch_report()
    line = (
        f"gpu_check: python {rep['python']}, torch {rep['torch']} (CUDA build {rep['torch_cuda'] or 'none'}), "
        f"CUDA device: {rep['device'] if rep['cuda'] else 'none'}"
    )
    if args.require_cuda and not rep["cuda"]:
        print(
            f"{line}: CUDA required (--require-cuda) and not available; run with a CUDA torch (PYTHON=/path/to/python)",
            flush=True,
        )
        return 2
    print(line, flush=True)
    deadline = Deadline(args.total_s)
    out = (args.out or default_out()).resolve()
    work = (args.work or Path(tempfile.mkdtemp(prefix="neurovfm-gpu-check-work-"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    run_dir = args.run_dir.resolve()
    cfg = build_config(args.config, args.overlay, args.set, run_dir)
    cfg_path = write_config(cfg, work / "config.yaml")
    model = cfg["pretrain"]["train"][0]
    runner = Runner(work, deadline, sys.executable)
    rows = [env_row(rep), data_row(runner, args, run_dir, work)]
    rows += mfu_rows(runner, args, work)
    rows += feature_throughput_rows(runner, args, work, run_dir, cfg_path)
    row, f_stage, f_random = features_stage(
        runner, args, work, run_dir, cfg_path, "random", None, "random", f"features random {model} (train + val)"
    )
    rows.append(row)
    row, c_stage, cv_random = cv_stage(
        runner, args, work, run_dir, cfg_path, f_random, "random", f"probe CV mean AUROC, random {model}"
    )
    rows.append(row)
    context = args.context_timeout_s if Path(args.context_script).is_file() else 0.0
    reserve = (f_stage.seconds + c_stage.seconds) * args.reserve_factor + context + args.margin_s
    more, encoder_pt = pretrain_rows(runner, args, work, run_dir, cfg, model, reserve)
    rows += more
    more, cv_trained = trained_rows(runner, args, work, run_dir, cfg_path, model, encoder_pt)
    rows += more + difference_rows(model, cv_random, cv_trained)
    device = args.device if args.device != "auto" else ("cuda" if rep["cuda"] else "cpu")
    rows.append(context_row(runner, args, work, run_dir, cfg_path, model, encoder_pt, device))

    kept = write_outputs(
        out,
        work,
        rows,
        runner,
        {
            "torch": rep,
            "run_dir": str(run_dir),
            "work": str(work),
            "total_s": deadline.elapsed(),
            "budget_s": args.total_s,
        },
    )
    print(
        f"\ndetails: {out} ({', '.join(kept)}); features, checkpoints and stage logs: {work}; "
        f"{deadline.elapsed():.0f} s of {args.total_s:.0f} s\n"
    )
    print(table(rows), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
