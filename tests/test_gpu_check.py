"""The GPU check (benchmarks/gpu_check.py, wrapped by benchmarks/gpu_pretrain_check.sh) at toy scale on the CPU:
a tiny run (store-format shards with patch 2 x 4 x 4, label tables of the real ontology) goes through every stage,
and the table it prints last has every row; the wrapper stops with one line when CUDA is required and absent."""

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from neurovfm.jepa.schedules import Schedules
from neurovfm.labels.ontology import load_ontology
from neurovfm.store.stats import write_stats
from shard_factory import TOY_LAYOUTS as LAYOUTS, write_toy_split

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402

PATCH = (2, 4, 4)
SHAPE = (8, 16, 16)  # token grid 4 x 4 x 4
STATS = {
    "CT": {"brain": {"mean": 0.4, "std": 0.3}, "blood": {"mean": 0.3, "std": 0.3}, "bone": {"mean": 0.3, "std": 0.2}},
    "MR": {"mri": {"mean": 0.4, "std": 0.3}},
}
STUDIES = {"train": 10, "val": 4}  # per modality
POSITIVE = 3  # the first classes of each ontology get labels; the rest stay 0


def _head(rng) -> tuple[np.ndarray, np.ndarray]:
    """uint8 voxels of an ellipsoidal head with a bright blob and noise; foreground token mask."""
    axes = np.meshgrid(*[np.arange(n) + 0.5 for n in SHAPE], indexing="ij")
    radii = rng.uniform(0.7, 0.95, size=3) * np.asarray(SHAPE) / 2
    r = np.sqrt(sum(((a - n / 2) / rad) ** 2 for a, n, rad in zip(axes, SHAPE, radii)))
    img = np.where(r < 1, 120.0, 5.0) + np.where(r < rng.uniform(0.2, 0.5), 90.0, 0.0)
    img = np.clip(img + rng.normal(0, 10, SHAPE), 0, 255).astype(np.uint8)
    tokens = img.reshape(4, 2, 4, 4, 4, 4).transpose(0, 2, 4, 1, 3, 5).reshape(4, 4, 4, -1)
    return img, (tokens > 60).mean(-1) >= 0.5


def _write_split(root: Path, split: str, rng) -> list[dict]:
    volumes, studies = [], []
    for mod in ("CT", "MR"):
        for s in range(STUDIES[split]):
            study = f"{split}-{mod}-{s:02d}"
            studies.append({"study_id": study, "split": split, "modality": mod})
            for v in range(1 + s % 2):
                img, mask = _head(rng)
                data = [img] if LAYOUTS[mod]["planes"] == 1 else [img, ((img >> 4) << 4 | (img >> 4)).astype(np.uint8)]
                volumes.append(
                    (
                        {
                            "series_id": f"{study}-{v}",
                            "study_id": study,
                            "patient_id": f"p-{study}",
                            "modality": mod,
                            "sequence": "ct" if mod == "CT" else "t1",
                        },
                        data,
                        mask,
                    )
                )
    write_toy_split(root / "shards" / split, split, volumes, PATCH, LAYOUTS)
    return studies


def _write_labels(root: Path, studies: list[dict], rng) -> None:
    (root / "labels").mkdir()
    for mod, modality in (("ct", "CT"), ("mri", "MR")):
        names = load_ontology(modality).names
        rows = []
        for st in (s for s in studies if s["modality"] == modality):
            y = np.zeros(len(names), dtype=int)
            y[:POSITIVE] = rng.random(POSITIVE) < 0.5
            rows.append({"study_id": st["study_id"], "split": st["split"], **dict(zip(names, y))})
        pd.DataFrame(rows).to_csv(root / "labels" / f"{mod}.csv", index=False)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu_check") / "run"
    rng = np.random.default_rng(3)
    studies = [st for split in STUDIES for st in _write_split(root, split, rng)]
    write_stats(root / "shards/train/stats.json", {"scale": "voxel / 255", "split": "train", "stats": STATS})
    _write_labels(root, studies, rng)
    return root


# a context diagnostic with the CLI the check calls (benchmarks/anatomy_context.py when it exists): it records the
# arguments it was given, so the test sees what the driver passes
CONTEXT_SCRIPT = """import csv, sys
out, rest = sys.argv[1], sys.argv[2:]
with open(out, "w", newline="") as fh:
    w = csv.writer(fh)
    w.writerow(["arg"])
    w.writerows([a] for a in rest)
"""

TOY = {
    "preprocess": {"patch": list(PATCH)},
    "pretrain": {
        "models": {"toy": {"encoder": "tiny", "predictor_dim": 32, "predictor_depth": 1, "predictor_heads": 2}},
        "train": ["toy"],
        "batch_size": 4,
        "workers": 0,
        "progress_every_s": 1000,
    },
    "features": {"max_tokens": 4096, "progress_every_s": 1000},
}


def toy_args(run: Path, out: Path, work: Path, context: Path) -> list[str]:
    return [
        "--out",
        str(out),
        "--work",
        str(work),
        "--run-dir",
        str(run),
        "--set",
        json.dumps(TOY),
        "--device",
        "cpu",
        "--total-s",
        "400",
        "--calib-steps",
        "4",
        "--min-steps",
        "2",
        "--max-steps",
        "6",
        "--cv-min-pos",
        "3",
        "--cv-folds",
        "3",
        "--cv-repeats",
        "1",
        "--mfu-model",
        "tiny",
        "--mfu-batch-sizes",
        "2",
        "--mfu-steps",
        "1",
        "--mfu-warmup",
        "1",
        "--mfu-matmul-n",
        "256",
        "--ft-model",
        "tiny",
        "--ft-max-studies",
        "4",
        "--context-script",
        str(context),
    ]


def test_toy_check_prints_every_row(toy_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    context = tmp_path / "context.py"
    context.write_text(CONTEXT_SCRIPT)
    out, work = tmp_path / "out", tmp_path / "work"
    t0 = time.monotonic()
    assert gpu_check.main(toy_args(toy_run, out, work, context)) == 0
    took = time.monotonic() - t0
    printed = capsys.readouterr().out
    table = printed[printed.index("check ") :]
    expected = [
        "torch / CUDA",
        "data (run: train/val shards, labels)",
        "train MFU tiny flash_attn",
        "train MFU tiny torch_varlen",
        "train MFU tiny sdpa_masked",
        "feature extraction tiny, MRI studies/s",
        "features random toy (train + val)",
        "probe CV mean AUROC, random toy",
        "pretrain step time",
        "pretrain toy",
        "features pretrained toy (train + val)",
        "probe CV mean AUROC, pretrained toy",
        "probe CV CT: toy - random",
        "probe CV MRI: toy - random",
        "anatomy context diagnostic",
    ]
    lines = table.splitlines()[2:]
    assert [ln.split("  ")[0].strip() for ln in lines] == expected, table
    rows = {r["check"]: r for r in csv.DictReader(open(out / "gpu_check.csv"))}
    assert list(rows) == expected
    # what must work on a CPU: every stage ran; the CUDA-only attention back ends say why they were skipped
    status = {k: r["status"] for k, r in rows.items()}
    assert set(status.values()) <= set(gpu_check.STATUSES)
    assert status["train MFU tiny flash_attn"] == "skip" and status["train MFU tiny torch_varlen"] == "skip"
    assert "unavailable" in rows["train MFU tiny torch_varlen"]["value"]
    assert "unavailable" in rows["train MFU tiny flash_attn"]["value"]
    assert status["train MFU tiny sdpa_masked"] in ("pass", "fail")
    for k in (
        "data (run: train/val shards, labels)",
        "features random toy (train + val)",
        "probe CV mean AUROC, random toy",
        "pretrain step time",
        "pretrain toy",
        "features pretrained toy (train + val)",
        "probe CV mean AUROC, pretrained toy",
        "anatomy context diagnostic",
    ):
        assert status[k] == "pass", (k, rows[k]["value"])
    assert status["feature extraction tiny, MRI studies/s"] in ("pass", "fail")
    assert status["probe CV CT: toy - random"] in ("pass", "fail")
    # the time budget sets pretrain.steps before the run (here capped at 6): schedules span the run
    details = json.loads((out / "gpu_check.json").read_text())
    trained = next(r for r in details["rows"] if r["check"] == "pretrain toy")["detail"]
    assert trained["steps"] == 6 and "--max-steps" in trained["plan"]
    ran = yaml.safe_load((work / "pretrain" / "config.yaml").read_text())
    assert ran["pretrain"]["steps"] == 6
    last = pd.read_csv(out / "pretrain_metrics.csv").iloc[-1]
    planned = Schedules(ran["pretrain"], 6).at(5)  # the schedules' last step is the run's last
    assert last["step"] == 5 and last["lr"] == pytest.approx(planned["lr"])
    assert last["momentum"] == pytest.approx(planned["momentum"])
    # the context diagnostic got random weights and the pretrained encoder.pt, and the check's config
    args = [r["arg"] for r in csv.DictReader(open(out / "anatomy_context.csv"))]
    assert args[:6] == ["--run-dir", str(toy_run.resolve()), "--encoder", "random", "-", "--encoder"]
    assert args[6:8] == ["toy", str(work.resolve() / "pretrain" / "encoder.pt")]
    assert args[8:10] == ["--device", "cpu"] and args[10] == "--config"
    checked = yaml.safe_load(Path(args[11]).read_text())  # the check's config, naming the run it reads
    assert checked["run"] == "run" and checked["pretrain"]["train"] == ["toy"]
    assert Path(checked["paths"]["results"]) == toy_run.resolve().parent
    # a device machine returns at most 8 files, flat: the summary is a few files in OUT, the bulk in WORK
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["gpu_check.csv", "gpu_check.json", "gpu_check_logs.txt", "pretrain_metrics.csv", "anatomy_context.csv"]
    )
    assert "===== pretrain: exit 0" in (out / "gpu_check_logs.txt").read_text()
    assert took < 110, f"the toy check took {took:.0f} s"


def test_plan_steps_keeps_within_budget():
    calib = {"step_s": 0.5, "fixed_s": 10.0}
    steps, how = gpu_check.plan_steps(remaining_s=300, reserve_s=90, calib=calib, min_steps=20, max_steps=None)
    assert steps == 400 and 10.0 + steps * 0.5 <= 300 - 90
    assert gpu_check.plan_steps(100, 85, calib, 20, None)[0] == 0  # 5 s left: fewer than 20 steps
    steps, how = gpu_check.plan_steps(300, 90, calib, 20, 50)
    assert steps == 50 and "--max-steps" in how
    assert gpu_check.plan_steps(300, 90, calib, 20, None, slack=1.25)[0] == 320  # 200 s / (0.5 s x 1.25)


def test_wrapper_requires_cuda_in_one_line(tmp_path):
    """On this CPU torch the wrapper stops at once, exit 2, one line naming the torch it found."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    env = {**os.environ, "OUT": str(tmp_path / "out"), "OMP_NUM_THREADS": "1", "PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks/gpu_pretrain_check.sh")], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 2
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1 and torch.__version__ in lines[0] and "CUDA required" in lines[0], proc.stdout
    assert not (tmp_path / "out").exists()


def test_data_row_never_builds_into_an_existing_folder(toy_run, tmp_path):
    """A complete run is used as it is; a half-built one is reported, not written into (even with --build-demo:
    only a missing folder, as on a bare device machine, is built); the build itself is not started here."""
    args = gpu_check.parser().parse_args(["--build-demo"])
    runner = gpu_check.Runner(tmp_path, gpu_check.Deadline(60), sys.executable)
    assert gpu_check.data_row(runner, args, toy_run, tmp_path).status == "pass"
    half = tmp_path / "half"
    (half / "shards/train").mkdir(parents=True)
    row = gpu_check.data_row(runner, args, half, tmp_path)
    assert row.status == "error" and "labels/ct.csv" in row.value
    assert sorted(p.name for p in half.rglob("*")) == ["shards", "train"] and runner.stages == []
    args.build_demo = False
    row = gpu_check.data_row(runner, args, tmp_path / "absent", tmp_path)
    assert row.status == "error" and "--build-demo" in row.value and runner.stages == []
