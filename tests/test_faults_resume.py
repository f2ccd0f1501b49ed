"""Kill and resume, and a full disk, for every long step of the workflow (issue 18, item 7).

For each step (synth, ingest, preprocess, pretrain, features, probe, reportgen_train, reportgen_generate,
reportgen_eval) on small data:

1. an uninterrupted run in this process is the reference (its work time is measured);
2. the same step runs in a child process (this file run as a script, through the scripts' one-line
   failure wrapper), which is SIGKILLed at a random point of its work (after its imports, at a uniform
   fraction of the reference's work time). Every output it leaves must be complete: equal to the
   reference, or, for files rewritten whole as training goes (metrics), readable;
3. rerunning the step in the same folder must give the reference's outputs: bitwise on the CPU at one
   thread (CSV columns of wall-clock timings and the zip timestamps of .npz files aside);
4. the step runs again in a fresh folder with a file size limit (``ulimit -f``) below its largest output: it
   must fail with one line naming ``disk_full`` (no traceback) and leave no truncated output.

The random fractions come from ``NEUROVFM_FAULT_SEED`` (default: a new seed per session, printed in every
assertion message so a failure can be replayed).
"""

from __future__ import annotations

import copy
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

THIS = Path(__file__).resolve()
TIMING_COLUMNS = {"tokens_per_s", "step_s", "seconds"}  # wall-clock measurements: never equal twice
SEED = int(os.environ.get("NEUROVFM_FAULT_SEED") or time.time_ns() % 2**31)
START = "NEUROVFM-STEP-START"
KILL_ATTEMPTS = 3


# --- the steps: what each one runs and which files it declares ----------------------------------------------


def _rg(ctx):
    from neurovfm.config import validate

    return validate(ctx["rg_cfg"])


def run_synth(ctx, out: Path):
    from neurovfm import pipeline

    pipeline.synth(ctx["synth_cfg"], out / "pacs_export", threads=1)


def run_ingest(ctx, out: Path):
    from neurovfm import pipeline

    export = Path(ctx["export"])
    pipeline.ingest(ctx["cfg"], export / "dicom", export / "reports.csv", out / "ingest", out / "private", threads=1)


def run_preprocess(ctx, out: Path):
    from neurovfm import pipeline

    pipeline.preprocess(
        ctx["cfg"],
        Path(ctx["ingest"]) / "series.csv",
        Path(ctx["private"]) / "files.csv",
        Path(ctx["export"]) / "dicom",
        out / "shards",
        threads=1,
    )


def run_pretrain(ctx, out: Path):
    from neurovfm import pipeline

    shards = Path(ctx["shards"])
    pipeline.pretrain(
        ctx["cfg"],
        "tiny",
        shards / "train" / "index.json",
        shards / "train" / "stats.json",
        out / "pretrain",
        threads=1,
    )


def run_features(ctx, out: Path):
    from neurovfm import pipeline

    shards = Path(ctx["shards"])
    # val and test only: the train split holds most of the tokens and adds nothing to what is tested here
    pipeline.features(
        ctx["cfg"],
        "random",
        {s: shards / s / "index.json" for s in ("val", "test")},
        shards / "train" / "stats.json",
        out / "features",
        threads=1,
    )


def run_probe(ctx, out: Path):
    from neurovfm import pipeline

    labels = Path(ctx["labels"])
    pipeline.probe(
        ctx["cfg"],
        "random",
        "ct",
        ctx["features_all"],
        labels / "ct.csv",
        labels / "findings.jsonl",
        out / "probe",
        threads=1,
    )


def run_reportgen_train(ctx, out: Path):
    from neurovfm import pipeline

    p = ctx["rg"]
    pipeline.reportgen_train(
        _rg(ctx), 8, p["train"], p["findings"], p["ct"], p["mri"], p["reports"], out / "rg", threads=1
    )


def run_reportgen_generate(ctx, out: Path):
    from neurovfm import pipeline

    p = ctx["rg"]
    pipeline.reportgen_generate(
        _rg(ctx), ctx["rg_model"], p["test"], p["findings"], p["reports"], out / "generations.jsonl", threads=1
    )


def run_reportgen_eval(ctx, out: Path):
    from neurovfm import pipeline

    p, e = ctx["rg"], ctx["rg_eval"]
    pipeline.reportgen_eval(
        _rg(ctx),
        {"fake/n8": e["generations"]},
        e["frontier"],
        e["predictions"],
        e["set"],
        p["findings"],
        p["ct"],
        p["mri"],
        out / "text.csv",
        out / "triage.csv",
        out / "cost.csv",
        out / "scaling.csv",
    )


STEPS = {
    # name: (function, declared outputs relative to the step's folder (None: every file under it),
    #        files rewritten whole while the step runs (readable snapshots), uses torch)
    "synth": (run_synth, None, (), False),
    "ingest": (
        run_ingest,
        [
            "ingest/series.csv",
            "ingest/studies.csv",
            "ingest/exclusions.csv",
            "ingest/summary.json",
            "private/files.csv",
            "private/reports.jsonl",
        ],
        (),
        False,
    ),
    "preprocess": (run_preprocess, None, (), False),
    "pretrain": (
        run_pretrain,
        [
            "pretrain/encoder.pt",
            "pretrain/metrics.csv",
            "pretrain/context_fractions.csv",
            "pretrain/data.json",
            "pretrain/studies.csv",
        ],
        ("pretrain/metrics.csv", "pretrain/context_fractions.csv"),
        True,
    ),
    "features": (run_features, None, (), True),
    "probe": (
        run_probe,
        [
            f"probe/{n}"
            for n in (
                "probe.pt",
                "predictions.csv",
                "thresholds.csv",
                "selection.csv",
                "history.csv",
                "unmatched.csv",
                "attention.npz",
            )
        ],
        (),
        True,
    ),
    "reportgen_train": (
        run_reportgen_train,
        [
            "rg/connector.pt",
            "rg/metrics.csv",
            "rg/curated.csv",
            "rg/lm/model.safetensors",
            "rg/lm/config.json",
            "rg/lm/tokenizer.json",
        ],
        (),
        True,
    ),
    "reportgen_generate": (run_reportgen_generate, ["generations.jsonl"], (), True),
    "reportgen_eval": (run_reportgen_eval, ["text.csv", "triage.csv", "cost.csv", "scaling.csv"], (), False),
}


# --- the child process ---------------------------------------------------------------------------------------


def child(ctx_json: str, name: str, out: str) -> None:
    """Run one step the way a workflow script does (one-line failures), after announcing its start."""
    ctx = json.loads(Path(ctx_json).read_text())
    fn, _, _, uses_torch = STEPS[name]
    if uses_torch:
        import torch

        torch.set_num_threads(1)
    from neurovfm import pipeline  # noqa: F401  (imported before the start mark: the kill lands in the work)
    from neurovfm.utils.stage import step

    if name == "synth":  # the anatomy atlas is loaded once per process (about 10 s), as the reference had it
        from neurovfm.synth.anatomy import load_anatomy

        load_anatomy()
    print(START, flush=True)
    with step(name, ctx["cfg"], None):
        fn(ctx, Path(out))


def _spawn(ctx_path: Path, name: str, out: Path, fsize: int | None = None, stderr=subprocess.PIPE) -> subprocess.Popen:
    """The child; ``stderr`` a file for a run that is killed (a full pipe would stall it, not the step)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(THIS.parent)}

    def limit():
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.Popen(
        [sys.executable, str(THIS), str(ctx_path), name, str(out)],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=env,
        preexec_fn=limit,
    )


# --- comparing outputs ------------------------------------------------------------------------------------------


def _files(root: Path, declared) -> list[str]:
    """Declared outputs, or every non-hidden file under ``root`` (temporary siblings start with a dot)."""
    if declared is not None:
        return list(declared)
    if not root.exists():
        return []
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def _same(a: Path, b: Path) -> bool:
    if a.suffix == ".csv":
        fa, fb = pd.read_csv(a), pd.read_csv(b)
        if a.read_bytes() == b.read_bytes():
            return True
        drop = [c for c in fa.columns if c in TIMING_COLUMNS]
        return list(fa.columns) == list(fb.columns) and fa.drop(columns=drop).equals(fb.drop(columns=drop))
    if a.suffix == ".jsonl":  # rows may carry their wall-clock time
        rows = [
            [{k: v for k, v in json.loads(ln).items() if k not in TIMING_COLUMNS} for ln in f.read_text().splitlines()]
            for f in (a, b)
        ]
        return rows[0] == rows[1]
    if a.suffix == ".pt":  # pickled Python floats: equal NaNs may be pickled as one object or two
        return a.read_bytes() == b.read_bytes() or _same_obj(_torch_load(a), _torch_load(b))
    if a.suffix == ".npz":  # zip members carry their write time
        with np.load(a) as za, np.load(b) as zb:
            return sorted(za.files) == sorted(zb.files) and all(np.array_equal(za[k], zb[k]) for k in za.files)
    return a.read_bytes() == b.read_bytes()


def _torch_load(path: Path):
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)


def _same_obj(x, y) -> bool:
    """Equal content: tensors bitwise (equal_nan), containers element by element, NaN equal to NaN."""
    import torch

    if isinstance(x, torch.Tensor):
        return (
            isinstance(y, torch.Tensor)
            and x.dtype == y.dtype
            and x.shape == y.shape
            and bool(
                torch.equal(x, y) or (x.is_floating_point() and torch.allclose(x, y, rtol=0, atol=0, equal_nan=True))
            )
        )
    if isinstance(x, dict):
        return isinstance(y, dict) and list(x) == list(y) and all(_same_obj(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)):
        return type(x) is type(y) and len(x) == len(y) and all(_same_obj(u, v) for u, v in zip(x, y))
    if isinstance(x, float) and isinstance(y, float) and x != x and y != y:
        return True
    return x == y


def _readable(path: Path) -> bool:
    try:
        if path.suffix == ".csv":
            pd.read_csv(path)
        elif path.suffix == ".json":
            json.loads(path.read_text())
        return True
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return False


def _check_left(name: str, ref: Path, out: Path, what: str) -> list[str]:
    """Outputs left in ``out`` by an interrupted run: each complete (equal to the reference or a readable
    snapshot). Returns the files present."""
    _, declared, snapshots, _ = STEPS[name]
    present = [f for f in _files(ref, declared) if (out / f).exists()]
    extra = sorted(set(_files(out, None if declared is None else declared)) - set(_files(ref, declared)))
    assert not extra, f"{name} ({what}, seed {SEED}): files the reference does not have: {extra[:5]}"
    for f in present:
        ok = _readable(out / f) if f in snapshots else _same(ref / f, out / f)
        assert ok, f"{name} ({what}, seed {SEED}): {f} is not the complete output"
    return present


def _check_equal(name: str, ref: Path, out: Path) -> None:
    _, declared, _, _ = STEPS[name]
    expected = _files(ref, declared)
    assert expected, f"{name}: the reference wrote nothing"
    if declared is None:
        assert _files(out, None) == expected, f"{name} (seed {SEED}): the rerun wrote other files"
    for f in expected:
        assert (out / f).is_file(), f"{name} (seed {SEED}): {f} missing after the rerun"
        assert _same(ref / f, out / f), f"{name} (seed {SEED}): {f} differs from the uninterrupted run"


# --- fixtures: small inputs and the uninterrupted references ---------------------------------------------------


@pytest.fixture(scope="module")
def world(demo_run, tmp_path_factory):
    """Inputs of every step (the session's small synthetic run, report-generation fixtures) and a cache of
    reference runs, each computed once, in this process, at one thread."""
    import torch

    from neurovfm.config import validate
    from reportgen_fixtures import make_inputs, tiny_config

    tmp = tmp_path_factory.mktemp("faults")
    cfg = copy.deepcopy(demo_run["cfg"])
    cfg["pretrain"].update({"steps": 6, "batch_size": 4, "checkpoint_every": 2})
    cfg["probes"].update(
        {"epochs": 30, "selection": "validation", "grid": {"lr": [1e-2], "weight_decay": [0.05], "dropout": [0.0]}}
    )
    cfg["preprocess"]["workers"] = 1
    validate(cfg)
    synth_cfg = copy.deepcopy(cfg)
    synth_cfg["synth"].update({"n_studies": 4, "mr_matrix": [32], "ct_matrix": [32], "max_slices": 12, "workers": 1})
    validate(synth_cfg)
    rg_dir = tmp / "rg_inputs"
    rg_paths = {k: str(v) for k, v in make_inputs(rg_dir).items()}
    ctx = {
        "cfg": cfg,
        "synth_cfg": synth_cfg,
        "rg_cfg": tiny_config(tmp),
        "rg": rg_paths,
        "export": str(demo_run["export"]),
        "ingest": str(demo_run["results"] / "ingest"),
        "private": str(demo_run["private"]),
        "labels": str(demo_run["results"] / "labels"),
    }
    refs: dict[str, tuple[Path, float]] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    def reference(name: str) -> tuple[Path, float]:
        if name not in refs:
            for dep, key, sub in (("preprocess", "shards", "shards"), ("reportgen_train", "rg_model", "rg")):
                if name in _needs(dep) and key not in ctx:
                    ctx[key] = str(reference(dep)[0] / sub)
            if name == "probe" and "features_all" not in ctx:  # every split (the features step tests two)
                from neurovfm import pipeline

                shards = Path(ctx["shards"])
                every = {s: shards / s / "index.json" for s in ("train", "val", "test")}
                pipeline.features(
                    ctx["cfg"], "random", every, shards / "train" / "stats.json", tmp / "features_all", threads=1
                )
                ctx["features_all"] = str(tmp / "features_all")
            if name == "reportgen_eval" and "rg_eval" not in ctx:
                ctx["rg_eval"] = _eval_inputs(ctx, reference("reportgen_generate")[0], tmp / "rg_eval")
            out = tmp / "ref" / name
            t0 = time.perf_counter()
            STEPS[name][0](ctx, out)
            refs[name] = (out, time.perf_counter() - t0)
            (tmp / "ctx.json").write_text(json.dumps(ctx))
        return refs[name]

    yield {"tmp": tmp, "ctx": ctx, "ctx_path": tmp / "ctx.json", "reference": reference}
    torch.set_num_threads(threads)


def _needs(dep: str) -> set[str]:
    return {
        "preprocess": {"pretrain", "features", "probe"},
        "reportgen_train": {"reportgen_generate", "reportgen_eval"},
    }[dep]


def _eval_inputs(ctx: dict, gen_dir: Path, out: Path) -> dict:
    """Triage set and rule-judge predictions over the reference generations (inputs of reportgen_eval)."""
    from neurovfm.config import validate
    from neurovfm.reportgen.run import triage, triage_set

    cfg, p = validate(ctx["rg_cfg"]), ctx["rg"]
    cfg["reportgen"]["encoders"], cfg["reportgen"]["sizes"] = ["fake"], [8]
    ctx["rg_cfg"] = cfg
    out.mkdir(parents=True)
    (out / "frontier.jsonl").write_text("")
    gens = {"fake/n8": gen_dir / "generations.jsonl"}
    triage_set(cfg, p["findings"], p["ct"], p["mri"], p["test"], None, out / "set.csv", out / "acuity.csv")
    triage(
        cfg,
        gens,
        out / "frontier.jsonl",
        p["findings"],
        p["reports"],
        out / "set.csv",
        out / "acuity.csv",
        out / "cache",
        out / "pred.csv",
        out / "val.csv",
    )
    return {
        "generations": str(gens["fake/n8"]),
        "frontier": str(out / "frontier.jsonl"),
        "predictions": str(out / "pred.csv"),
        "set": str(out / "set.csv"),
    }


# --- the tests ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(STEPS))
def test_kill_and_resume(world, name):
    ref, work_s = world["reference"](name)
    rng = random.Random(f"{SEED}-{name}")
    out = world["tmp"] / "killed" / name
    err_log = world["tmp"] / f"killed_{name}.stderr"
    fraction = rng.uniform(0.05, 0.9)
    for attempt in range(KILL_ATTEMPTS):  # a child that outran the kill is retried with an earlier one
        with open(err_log, "w") as err:
            proc = _spawn(world["ctx_path"], name, out, stderr=err)
        assert proc.stdout.readline().strip() == START, err_log.read_text()
        time.sleep(fraction * work_s)
        killed = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if not killed:  # it finished first: cleanly, then; start again from nothing
            assert proc.returncode == 0, err_log.read_text()
            shutil.rmtree(out)
            fraction /= 4
            continue
        _check_left(name, ref, out, f"killed at {fraction:.3f} of {work_s:.2f} s")
        break
    assert killed, f"{name}: the step finished before every kill ({KILL_ATTEMPTS} tries, seed {SEED})"
    # rerun in the same folder (as Snakemake's rerun-incomplete or a person would): the reference's outputs
    STEPS[name][0](world["ctx"], out)
    _check_equal(name, ref, out)


@pytest.mark.parametrize("name", list(STEPS))
def test_full_disk_fails_cleanly(world, name):
    ref, _ = world["reference"](name)
    _, declared, _, _ = STEPS[name]
    sizes = sorted((ref / f).stat().st_size for f in _files(ref, declared))
    largest = sizes[-1]
    out = world["tmp"] / "full_disk" / name
    # below half the largest output, and below the median file of steps that write many (it fails early)
    proc = _spawn(world["ctx_path"], name, out, fsize=max(1024, min(largest // 2, sizes[len(sizes) // 2])))
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, f"{name}: exit {proc.returncode}\n{stderr[-2000:]}"
    assert "Traceback" not in stderr, stderr[-2000:]
    lines = [ln for ln in stderr.splitlines() if ln.startswith("neurovfm ")]
    assert len(lines) == 1 and "disk_full" in lines[0], stderr[-2000:]
    left = _check_left(name, ref, out, "full disk")
    biggest = [f for f in _files(ref, declared) if (ref / f).stat().st_size == largest]
    assert not set(biggest) & set(left), f"{name}: the output that could not fit was published"


if __name__ == "__main__":
    child(*sys.argv[1:])
