"""One function per workflow step. The Snakemake scripts and the ``neurovfm`` CLI both call these,
so a step behaves the same whether a rule or a person runs it."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from neurovfm.ingest.deid import resolve_key
from neurovfm.utils.atomic import atomic_dir, write_csv

log = logging.getLogger("neurovfm")


def _workers(section_value, threads: int | None) -> int:
    return int(section_value or threads or os.cpu_count() or 1)


def _existing(path: str | None, what: str) -> Path:
    if path is None:
        raise FileNotFoundError(f"{what} is not configured")
    p = Path(os.path.expandvars(str(path)))
    if not p.exists():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist (expanded: {p})")
    return p


def _keep_freed_memory(cfg: dict) -> None:
    """The export's processes keep freed memory for their next arrays (``synth.keep_freed_memory_mb``; 0: off)."""
    mb = int(cfg["synth"]["keep_freed_memory_mb"])
    if mb > 0:
        from neurovfm.utils.allocator import keep_freed_memory

        log.info("memory: %s", keep_freed_memory(mb))


def synth(cfg: dict, out_dir: str | Path, threads: int | None = None) -> dict:
    """Write the embedded health system's PACS export into ``out_dir`` (atomically, as one folder)."""
    from neurovfm.synth.export import synth_settings, write_export

    workers = _workers(cfg["synth"]["workers"], threads)
    _keep_freed_memory(cfg)
    with atomic_dir(out_dir) as tmp:
        manifest = write_export(Path(tmp), synth_settings(cfg), seed=cfg["seed"], workers=workers)
    log.info("synthetic export written to %s", out_dir)
    return manifest


def ingest(cfg: dict, dicom_dir, reports_csv, out_dir, private_dir, threads: int | None = None) -> dict:
    from neurovfm.ingest import inputs
    from neurovfm.ingest.reports import REQUIRED

    key = resolve_key(cfg["deid"], cfg["run"])
    workers = _workers(cfg["ingest"]["workers"], threads)
    if cfg["input"]["kind"] == "nifti":
        from neurovfm.ingest.nifti import REQUIRED_COLUMNS, run_ingest_nifti

        nifti_dir = inputs.folder(cfg["input"]["nifti_dir"], "input.nifti_dir")
        nifti_csv = inputs.table(cfg["input"]["nifti_csv"], "input.nifti_csv", REQUIRED_COLUMNS)
        return run_ingest_nifti(nifti_dir, nifti_csv, Path(out_dir), Path(private_dir), cfg, key)
    from neurovfm.ingest.run import run_ingest

    root = inputs.folder(dicom_dir, "the DICOM export (input.dicom_dir / --dicom-dir)")
    reports = (
        inputs.table(reports_csv, "the reports CSV (input.reports_csv / --reports-csv)", REQUIRED)
        if reports_csv
        else None
    )
    return run_ingest(str(root), reports, Path(out_dir), Path(private_dir), cfg, key, workers)


def ingest_walk(cfg: dict, dicom_dir, list_paths: list) -> dict:
    """Sharded ingestion, step 1: the export's sorted file list in ``len(list_paths)`` pieces (private)."""
    from neurovfm.ingest import inputs
    from neurovfm.ingest.scatter import write_lists

    root = inputs.folder(dicom_dir, "the DICOM export (input.dicom_dir / --dicom-dir)")
    return write_lists(root, [Path(p) for p in list_paths])


def ingest_headers(cfg: dict, dicom_dir, list_path, out_path, threads: int | None = None) -> dict:
    """Sharded ingestion, step 2 (one job per chunk): the header records of one piece of the file list."""
    from neurovfm.ingest import inputs
    from neurovfm.ingest.scatter import read_chunk

    root = inputs.folder(dicom_dir, "the DICOM export (input.dicom_dir / --dicom-dir)")
    return read_chunk(root, list_path, out_path, cfg, workers=_workers(cfg["ingest"]["workers"], threads))


def ingest_merge(cfg: dict, chunk_paths: list, reports_csv, out_dir, private_dir) -> dict:
    """Sharded ingestion, step 3: the outputs of :func:`ingest` from exactly ``ingest.chunks`` header chunks."""
    from neurovfm.ingest import inputs
    from neurovfm.ingest.reports import REQUIRED
    from neurovfm.ingest.scatter import merge

    key = resolve_key(cfg["deid"], cfg["run"])
    reports = (
        inputs.table(reports_csv, "the reports CSV (input.reports_csv / --reports-csv)", REQUIRED)
        if reports_csv
        else None
    )
    n_chunks = int(cfg["ingest"]["chunks"])
    return merge(chunk_paths, n_chunks, reports, Path(out_dir), Path(private_dir), cfg, key)


def labels(cfg: dict, reports_jsonl, studies_csv, out_dir, private_dir) -> dict:
    from neurovfm.labels.run import run_labels

    return run_labels(Path(reports_jsonl), Path(studies_csv), Path(out_dir), cfg, Path(private_dir))


def extractor_eval(cfg: dict, labels_dir, truth_dir, studies_csv, out_csv) -> None:
    from neurovfm.labels.evaluate import evaluate_extractor

    key = resolve_key(cfg["deid"], cfg["run"])
    table = evaluate_extractor(Path(labels_dir), Path(truth_dir), Path(studies_csv), key)
    write_csv(out_csv, table)
    macro = table[table["label"] == "macro"]
    for _, row in macro.iterrows():
        log.info("extractor macro F1 %s: %.4f", row["modality"], row["f1"])


def preprocess(
    cfg: dict,
    series_csv,
    files_csv,
    export_root,
    out_dir,
    threads: int | None = None,
    parts: list | None = None,
    index_splits=("train", "val", "test"),
    ledger: bool = True,
) -> dict:
    """Series -> 1 x 1 x 4 mm windowed, quantised volumes in per-split memory-mapped shards. A rerun keeps
    finished shards and retries series excluded for transient reasons (docs/troubleshooting.md). ``parts``:
    the part files of :func:`preprocess_shard` jobs; then only the indexes, statistics and ledger are written
    (every shard must be finished). ``index_splits`` / ``ledger``: which indexes this call writes, and whether
    the ledger and summary (the workflow: train's index and statistics first, then the rest)."""
    from neurovfm.ingest import inputs
    from neurovfm.preprocess.run import run_preprocess

    workers = _workers(cfg["preprocess"]["workers"], threads)
    root = inputs.folder(export_root, "the export root (input.dicom_dir / input.nifti_dir)")
    kind = cfg["input"]["kind"]
    return run_preprocess(
        Path(series_csv),
        Path(files_csv),
        root,
        Path(out_dir),
        cfg,
        workers=workers,
        kind=kind,
        parts=parts,
        index_splits=tuple(index_splits),
        ledger=ledger,
    )


def preprocess_shard(
    cfg: dict, series_csv, files_csv, export_root, out_dir, split: str, shard: int, part_path, threads=None
) -> dict:
    """One shard of one split of :func:`preprocess` (a job of its own), then its part file."""
    from neurovfm.ingest import inputs
    from neurovfm.preprocess.run import run_preprocess_shard

    workers = _workers(cfg["preprocess"]["workers"], threads)
    root = inputs.folder(export_root, "the export root (input.dicom_dir / input.nifti_dir)")
    return run_preprocess_shard(
        Path(series_csv),
        Path(files_csv),
        root,
        Path(out_dir),
        cfg,
        split,
        int(shard),
        Path(part_path),
        workers=workers,
        kind=cfg["input"]["kind"],
    )


def fig_ed_preprocessing(cfg: dict, series_csv, files_csv, export_root, shards_dir, out_png) -> None:
    from neurovfm.plots.ed_preprocessing import make_figure

    make_figure(
        cfg, Path(series_csv), Path(files_csv), _existing(export_root, "export root"), Path(shards_dir), Path(out_png)
    )


def fig_ed_dataset(cfg: dict, series_csv, studies_csv, shards_dir, labels_dir, out_png) -> None:
    from neurovfm.plots.ed_dataset import make_figure

    make_figure(cfg, Path(series_csv), Path(studies_csv), Path(shards_dir), Path(labels_dir), Path(out_png))


def pretrain(
    cfg: dict,
    model: str,
    train_index,
    stats_json,
    out_dir,
    threads: int | None = None,
    findings=None,
    reports=None,
) -> dict:
    """Pretraining of ``pretrain.models[model]`` with its objective on the train split (this process; under
    torchrun, one rank). Writes checkpoint.pt, encoder.pt, metrics.csv and context_fractions.csv to ``out_dir``.
    ``findings`` / ``reports`` (labels/findings.jsonl, the private reports.jsonl): the texts an HLIP model reads
    (its ``text.source``), in memory only."""
    from neurovfm.jepa.train import pretrain_seed, train
    from neurovfm.store.dataset import VolumeDataset

    dataset = VolumeDataset(
        _existing(train_index, "train index"),
        _existing(stats_json, "train statistics"),
        ct_window_probs=cfg["pretrain"]["ct_window_probs"],
        seed=pretrain_seed(cfg),
    )
    texts = {k: _existing(v, k) for k, v in (("findings", findings), ("reports", reports)) if v}
    return train(cfg, model, dataset, Path(out_dir), threads=threads, text_sources=texts)


def pretrain_job(
    cfg: dict,
    model: str,
    train_index,
    stats_json,
    out_dir,
    gpus: int = 0,
    nodes: int = 1,
    threads: int | None = None,
    findings=None,
    reports=None,
) -> None:
    """The workflow's pretraining job: in this process on the CPU (gpus 0), else ``torchrun`` over the GPUs
    (and ``srun`` over the nodes of a multi-node SLURM job) running ``neurovfm jepa train``; the child's
    output is relayed to this process's log handlers (the rule's log). ``findings`` / ``reports``: see
    :func:`pretrain` (the child reads them from their paths)."""
    import yaml

    from neurovfm.jepa.launch import launch_command, slurm_head_node
    from neurovfm.utils.atomic import write_text

    if gpus <= 0:
        pretrain(cfg, model, train_index, stats_json, out_dir, threads=threads, findings=findings, reports=reports)
        return
    out_dir = Path(out_dir)
    run_config = out_dir / "run_config.yaml"
    write_text(run_config, yaml.safe_dump(cfg, sort_keys=False))
    args = [
        "jepa",
        "train",
        "--config",
        str(run_config),
        "--model",
        model,
        "--index",
        str(train_index),
        "--stats",
        str(stats_json),
        "--out",
        str(out_dir),
    ]
    for flag, path in (("--findings", findings), ("--reports", reports)):
        if path:
            args += [flag, str(path)]
    head = slurm_head_node() if nodes > 1 else None
    cmd = launch_command(args, gpus=gpus, nodes=nodes, head=head, job_id=os.environ.get("SLURM_JOB_ID"))
    _relay(cmd, f"pretraining of {model!r}")


def _relay(cmd: list[str], what: str) -> None:
    """Run ``cmd`` with its output copied to this process's log handlers (the rule's log); raise if it fails."""
    import subprocess

    log.info("launching: %s", " ".join(cmd))
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:
        for line in proc.stdout:
            for handler in log.handlers:
                handler.stream.write(line)
                handler.flush()
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}); its output is in the log")


def fig_ed_masking(cfg: dict, train_index, stats_json, out_png) -> dict:
    from neurovfm.plots.ed_masking import make_figure

    return make_figure(
        cfg, _existing(train_index, "train index"), _existing(stats_json, "train statistics"), Path(out_png)
    )


def features(
    cfg: dict,
    encoder: str,
    shard_indices: dict,
    stats_json,
    out_dir,
    encoder_pt=None,
    threads: int | None = None,
    device: str | None = None,
    shard: int | None = None,
) -> dict:
    """Frozen features of every volume of every split (``shard_indices``: split -> shards index.json) under
    ``out_dir/{split}/`` (``results/{run}/features/{encoder}/``). ``encoder``: a key of ``pretrain.models``
    (``encoder_pt`` its encoder.pt), ``random`` (the architecture of the first of ``pretrain.train``, weights
    from ``features.seed``, default ``seed``) or a key of ``encoders`` (a public 2D encoder applied slice-wise,
    :mod:`neurovfm.features.slicewise`; so is a pretrain model with ``objective: dinov2``). Settings from the ``features`` config section:
    ``max_tokens`` (tokens per forward pass), ``chunk_tokens``, ``precision``, ``progress_every_s``."""
    import torch

    from neurovfm.features.encoders import RANDOM, load_frozen
    from neurovfm.features.extract import extract, resolve_device

    fcfg = cfg["features"]
    if threads and not torch.cuda.is_available():
        torch.set_num_threads(int(threads))
    dev = resolve_device(device)
    indices = {s: _existing(p, f"{s} shards index") for s, p in shard_indices.items()}
    if encoder in public_encoders(cfg):
        return _features_public(cfg, encoder, indices, out_dir, dev, shard)
    if _slice_model(cfg, encoder):
        return _features_dinov2(cfg, encoder, indices, out_dir, dev, shard, encoder_pt)
    stats = _existing(stats_json, "train statistics")
    pt = None if encoder == RANDOM else _existing(encoder_pt, f"encoder.pt of {encoder!r}")
    enc, model_cfg = load_frozen(encoder, cfg, pt, seed=fcfg["seed"], device=dev)
    log.info("features with encoder %r (%s) on %s", encoder, model_cfg.get("encoder"), dev)
    return extract(
        enc,
        encoder,
        model_cfg,
        indices,
        stats,
        Path(out_dir),
        device=dev,
        max_tokens=fcfg["max_tokens"],
        chunk_tokens=fcfg["chunk_tokens"],
        precision=fcfg["precision"],
        progress_every_s=fcfg["progress_every_s"],
        shard=shard,
    )


def public_encoders(cfg: dict) -> dict:
    """The ``encoders`` section: public 2D encoders applied slice-wise, by name."""
    return dict(cfg.get("encoders") or {})


# the method behind each pretraining objective, as tables and figures name it
METHOD_NAMES = {"vjepa": "Vol-JEPA", "videomae": "VideoMAE", "hlip": "HLIP", "dinov2": "DINOv2 on slices"}


def encoder_label(cfg: dict, encoder: str) -> str:
    """An encoder's name in tables and figures: a pretrained model is ``name (method)`` (``tiny (Vol-JEPA)``,
    ``tiny_mae (VideoMAE)``), a public 2D encoder without a weights folder ``name (random weights)``; every other
    name (``random``, a public encoder with weights) is itself."""
    model = cfg["pretrain"]["models"].get(encoder)
    if model is not None:
        from neurovfm.jepa.objectives import objective

        return f"{encoder} ({METHOD_NAMES[objective(model)]})"
    spec = public_encoders(cfg).get(encoder)
    if spec is None:
        return encoder
    from neurovfm.features.public2d.loaders import label

    return label(encoder, spec)


def is_volumetric(cfg: dict, encoder: str) -> bool:
    """Whether ``encoder`` re-encodes whole volumes (random weights or a 3D pretrained model); the slice-wise
    encoders (public 2D encoders, ``objective: dinov2``) give one token per slice and cannot serve the analyses
    that re-encode volumes at token level (laterality, anatomy, external benchmarks)."""
    if encoder in public_encoders(cfg):
        return False
    if encoder not in cfg["pretrain"]["models"]:
        return encoder == "random"
    from neurovfm.jepa.objectives import is_slice_model

    return not is_slice_model(cfg, encoder)


def _features_public(cfg: dict, encoder: str, indices: dict, out_dir, device, shard: int | None) -> dict:
    """:func:`features` for a public 2D encoder (``encoders.{encoder}``): slice embeddings as tokens."""
    from neurovfm.features.public2d.loaders import load_public

    fcfg, spec = cfg["features"], public_encoders(cfg)[encoder]
    seed = cfg["seed"] if fcfg["seed"] is None else fcfg["seed"]
    enc = load_public(encoder, spec, seed, device)
    log.info("features with public encoder %s (%s) on %s", enc.info["label"], enc.info["path"] or "no folder", device)
    return _slicewise(fcfg, enc, encoder, spec, indices, out_dir, device, shard)


def _slicewise(fcfg: dict, enc, encoder: str, spec: dict, indices: dict, out_dir, device, shard: int | None) -> dict:
    """A slice encoder through :func:`neurovfm.features.slicewise.extract` with the ``features`` settings."""
    from neurovfm.features import slicewise

    return slicewise.extract(
        enc,
        encoder,
        spec,
        indices,
        Path(out_dir),
        device,
        chunk_tokens=fcfg["chunk_tokens"],
        precision=fcfg["precision"],
        progress_every_s=fcfg["progress_every_s"],
        shard=shard,
    )


def _slice_model(cfg: dict, encoder: str) -> bool:
    from neurovfm.jepa.objectives import is_slice_model

    return is_slice_model(cfg, encoder)


def _features_dinov2(cfg: dict, encoder: str, indices: dict, out_dir, device, shard: int | None, encoder_pt) -> dict:
    """:func:`features` for a DINOv2 model of ``pretrain.models`` (trained on slices): its exported encoder applied
    slice-wise like a public 2D encoder, with the model's ``slices`` settings."""
    from neurovfm.dinov2.export import load_slice_encoder, slice_spec

    fcfg = cfg["features"]
    enc = load_slice_encoder(_existing(encoder_pt, f"encoder.pt of {encoder!r}"), encoder, device)
    log.info("features with the DINOv2 slice encoder %r (step %d) on %s", encoder, enc.info["step"], device)
    return _slicewise(fcfg, enc, encoder, slice_spec(cfg, encoder), indices, out_dir, device, shard)


def features_shard(
    cfg: dict,
    encoder: str,
    split: str,
    shard: int,
    shard_index,
    stats_json,
    out_dir,
    part_path,
    encoder_pt=None,
    threads: int | None = None,
    device: str | None = None,
) -> dict:
    """:func:`features` for the volumes of one input shard of one split (one GPU job each); writes the
    part file that :func:`features_merge` checks, not the split's index."""
    import json

    from neurovfm.utils.atomic import write_text

    out = features(
        cfg, encoder, {split: shard_index}, stats_json, out_dir, encoder_pt, threads, device, shard=int(shard)
    )
    part = out[split]["part"]
    write_text(part_path, json.dumps(part, indent=1) + "\n")
    return part


def features_merge(cfg: dict, encoder: str, shard_indices: dict, stats_json, out_dir, parts: dict) -> dict:
    """The index.json of every split of ``encoder`` from the part files of its shard jobs (``parts``: split ->
    list of part files, one per shard of ``store.shards``); refuses missing, extra or stale parts."""
    from neurovfm.features import slicewise
    from neurovfm.features.extract import merge_split
    from neurovfm.store.stats import load_stats

    public = encoder in public_encoders(cfg) or _slice_model(cfg, encoder)  # slice embeddings: no token statistics
    stats = None if public else load_stats(_existing(stats_json, "train statistics"))
    out = {}
    for split, index_path in shard_indices.items():
        n_shards = int(cfg["store"]["shards"][split])
        index_path = _existing(index_path, f"{split} shards index")
        if public:
            out[split] = slicewise.merge(split, index_path, Path(out_dir) / split, parts[split], n_shards)
        else:
            out[split] = merge_split(split, index_path, stats, Path(out_dir) / split, parts[split], n_shards)
        log.info("features %s/%s merged: %s", encoder, split, out[split])
    return out


def probe_encoders(cfg: dict) -> list[str]:
    """Encoders the diagnostic tables and figures compare: ``probes.encoders``, else pretrain.train + random."""
    return list(cfg["probes"]["encoders"] or [*cfg["pretrain"]["train"], "random"])


def probe(
    cfg: dict, encoder: str, modality: str, feature_dir, labels_csv, findings_jsonl, out_dir, threads: int | None = None
) -> dict:
    """Study-level probe of one (encoder, modality ``ct``/``mri``): fit on train, choose on val, predict val and
    test (``results/{run}/probes/{encoder}/{modality}/``)."""
    import torch

    from neurovfm.probes.run import run_probe

    if threads:
        torch.set_num_threads(int(threads))
    return run_probe(
        cfg,
        encoder,
        modality,
        _existing(feature_dir, "feature folder"),
        _existing(labels_csv, "label table"),
        out_dir,
        findings_jsonl=findings_jsonl,
    )


def _eval_seed(cfg: dict) -> int:
    seed = cfg["probes"]["eval"]["seed"]
    return int(cfg["seed"] if seed is None else seed)


def diagnosis_table(cfg: dict, modality: str, predictions_csv, thresholds_csv, out_csv, out_categories_csv) -> None:
    """``tables/diagnosis_{modality}_{encoder}.csv`` (per class) and ``..._categories.csv`` (category means)."""
    from neurovfm.probes.evaluate import diagnosis_tables

    ev = cfg["probes"]["eval"]
    per_class, cats = diagnosis_tables(
        predictions_csv,
        thresholds_csv,
        modality,
        n_boot=ev["n_boot"],
        seed=_eval_seed(cfg),
        min_pos=ev["min_pos"],
        alpha=ev["alpha"],
    )
    write_csv(out_csv, per_class)
    write_csv(out_categories_csv, cats)
    row = cats[cats["category"] == "all"].iloc[0]
    log.info(
        "%s: mean test AUROC %.3f [%.3f, %.3f] over %d classes (%d not evaluable)",
        out_csv,
        row["auroc"],
        row["auroc_lo"],
        row["auroc_hi"],
        row["n_classes"],
        row["n_excluded"],
    )


def encoder_comparison(
    cfg: dict, modality: str, encoder_a: str, encoder_b: str, predictions_a, predictions_b, out_csv
) -> None:
    """``tables/diagnosis_{modality}_{a}_vs_{b}.csv``: paired bootstrap of AUROC(a) - AUROC(b)."""
    from neurovfm.probes.evaluate import encoder_difference

    ev = cfg["probes"]["eval"]
    table = encoder_difference(
        predictions_a,
        predictions_b,
        encoder_label(cfg, encoder_a),
        encoder_label(cfg, encoder_b),
        n_boot=ev["n_boot"],
        seed=_eval_seed(cfg),
        min_pos=ev["min_pos"],
        alpha=ev["alpha"],
    )
    write_csv(out_csv, table)
    row = table.iloc[0]
    log.info(
        "%s %s - %s: mean AUROC difference %.3f [%.3f, %.3f] over %d classes",
        modality,
        encoder_a,
        encoder_b,
        row["delta"],
        row["delta_lo"],
        row["delta_hi"],
        row["n_classes"],
    )


def fig_diagnosis(cfg: dict, which: str, tables_dir, out_png) -> None:
    """Fig. 2a (``which`` = fig2a) or Fig. 2c (fig2c) from the diagnosis tables of :func:`probe_encoders`."""
    from neurovfm.plots.diagnosis import fig2a, fig2c

    encoders = probe_encoders(cfg)
    names = {e: encoder_label(cfg, e) for e in encoders}  # legend and table: "(random weights)" where it applies
    tables_dir = Path(tables_dir)
    cats = {(names[e], m): tables_dir / f"diagnosis_{m}_{e}_categories.csv" for e in encoders for m in ("ct", "mri")}
    if which == "fig2a":
        classes = {(names[e], m): tables_dir / f"diagnosis_{m}_{e}.csv" for e in encoders for m in ("ct", "mri")}
        fig2a(cats, classes, list(names.values()), out_png)
    elif which == "fig2c":
        fig2c(cats, list(names.values()), out_png)
    else:
        raise ValueError(f"unknown diagnosis figure {which!r}")


def comparison_pairs(cfg: dict) -> list[tuple[str, str]]:
    """The paired comparisons of :func:`probe_encoders` (tables/diagnosis_{modality}_{a}_vs_{b}.csv): each encoder
    against the last (random weights by default), then each comparison encoder against the first (the main model)."""
    encoders = probe_encoders(cfg)
    return [(a, encoders[-1]) for a in encoders[:-1]] + [(a, encoders[0]) for a in encoders[1:-1]]


def fig_encoder_differences(cfg: dict, tables_dir, out_png) -> None:
    """``figures/ed_encoder_comparison.png``: the paired differences of :func:`comparison_pairs`, drawn."""
    from neurovfm.plots.diagnosis import encoder_differences

    tables_dir = Path(tables_dir)
    tables = {
        (a, b, m): tables_dir / f"diagnosis_{m}_{a}_vs_{b}.csv" for a, b in comparison_pairs(cfg) for m in ("ct", "mri")
    }
    encoder_differences(tables, probe_encoders(cfg), out_png)


def fig3d(cfg: dict, encoder: str, probes_dir, findings_jsonl, shard_index, out_png) -> None:
    """Fig. 3d: class attention of ``encoder``'s CT and MRI probes over a lateralised test finding."""
    from neurovfm.plots.attention_overlay import fig3d as draw

    probes_dir = Path(probes_dir)
    draw(
        {m: probes_dir / m / "attention.npz" for m in ("ct", "mri")},
        {m: probes_dir / m / "predictions.csv" for m in ("ct", "mri")},
        findings_jsonl,
        shard_index,
        tuple(cfg["preprocess"]["patch"]),
        encoder,
        out_png,
    )


def synth_external(cfg: dict, out_dir: str | Path, dataset: str | None = None, workers: int = 1) -> dict:
    """The demo's external dataset (``analysis.external.synthetic``): NIfTI volumes of a second synthetic
    site plus ``subjects.csv`` (the NIfTI ingest's CSV form) under ``out_dir``
    (``results/{run}/external/{dataset}/``), written atomically as one folder by ``workers`` processes."""
    from neurovfm.synth.external import write_external

    ecfg = cfg["analysis"]["external"]["synthetic"]
    if dataset is not None and dataset != ecfg["name"]:
        raise ValueError(f"no synthetic external dataset {dataset!r}; configured: {ecfg['name']!r}")
    _keep_freed_memory(cfg)
    with atomic_dir(out_dir) as tmp:
        summary = write_external(
            Path(tmp),
            ecfg,
            seed=int(cfg["seed"]),
            progress_every_s=float(cfg["analysis"]["progress_every_s"]),
            workers=workers,
        )
    log.info(
        "external dataset %s: %d subjects, %d scans -> %s",
        ecfg["name"],
        summary["n_subjects"],
        summary["n_scans"],
        out_dir,
    )
    return summary


def analysis_encoders(cfg: dict, section: str) -> list[str]:
    """Encoders of an analysis section that re-encodes volumes (``analysis.{section}.encoders``: anatomy,
    external), else the volumetric ones of :func:`probe_encoders` (:func:`is_volumetric`)."""
    return list(cfg["analysis"][section]["encoders"] or [e for e in probe_encoders(cfg) if is_volumetric(cfg, e)])


def _encoder_files(cfg: dict, encoders: list[str]) -> dict:
    res = Path(cfg["paths"]["results"]) / cfg["run"]
    return {e: None if e == "random" else res / "pretrain" / e / "encoder.pt" for e in encoders}


def anatomy_reference(cfg: dict, shard_index, truth_dir, out_path, threads: int | None = None) -> None:
    """The token regions and brain masks of the volumes the anatomy analysis chooses, from the rebuilt synthetic
    patients (no encoder needed: the workflow runs it while the encoders pretrain)."""
    from neurovfm.analysis.anatomy_run import build_reference

    _torch_threads(threads)
    build_reference(cfg, _existing(shard_index, "shards index"), _existing(truth_dir, "truth folder"), out_path)


def anatomy(
    cfg: dict,
    shard_index,
    stats_json,
    feature_indices: dict,
    truth_dir,
    out_table,
    out_fig3a,
    out_fig3b,
    out_kmeans,
    threads: int | None = None,
    reference=None,
) -> None:
    """Fig. 3a / 3b, Extended Data Fig. 13e and ``tables/anatomy.csv`` (``analysis.anatomy``) on the synthetic
    health system (token regions come from the generator's anatomy). ``feature_indices``: encoder -> the split's
    feature index; ``reference``: the maps of :func:`anatomy_reference`."""
    from neurovfm.analysis.anatomy_run import run_anatomy
    from neurovfm.plots.anatomy import ed_kmeans, fig3a, fig3b

    _torch_threads(threads)
    encoders = list(feature_indices)
    out = run_anatomy(
        cfg,
        _encoder_files(cfg, encoders),
        _existing(shard_index, "shards index"),
        _existing(stats_json, "train statistics"),
        feature_indices,
        _existing(truth_dir, "truth folder"),
        reference=reference,
    )
    write_csv(out_table, out["table"])
    fig3a(out["tsne"], encoders[0], out_fig3a)
    fig3b(out["table"], out["matching"], out_fig3b)
    ed_kmeans(out["kmeans"], out["table"], out_kmeans)
    for _, r in out["table"][out["table"]["group"] == "all"].iterrows():
        log.info(
            "anatomy %s %s %s: %.3f [%.3f, %.3f] (n %d)",
            r["analysis"],
            r["encoder"],
            r["metric"],
            r["value"],
            r["lo"],
            r["hi"],
            r["n"],
        )


def external_source(cfg: dict, dataset: str) -> tuple[str, str]:
    """(NIfTI folder, subjects CSV) of ``analysis.external.datasets[dataset]``; null paths name the synthetic site
    (``results/{run}/external/{dataset}/source/``)."""
    d = cfg["analysis"]["external"]["datasets"][dataset]
    if d["nifti_dir"] is None or d["csv"] is None:
        src = Path(cfg["paths"]["results"]) / cfg["run"] / "external" / dataset / "source"
        return str(src), str(src / "subjects.csv")  # the CSV's file paths are relative to the site folder
    return os.path.expandvars(d["nifti_dir"]), os.path.expandvars(d["csv"])


def external_benchmark(
    cfg: dict,
    dataset: str,
    stats_json,
    work_dir,
    private_dir,
    out_table,
    transfer_dirs: dict | None = None,
    threads: int | None = None,
) -> None:
    """``tables/external_{dataset}.csv``: ingest -> preprocess -> frozen features -> 20% stratified test, 8-fold
    CV, fold-ensembled probes with subject-level CIs, per encoder of ``analysis.external.encoders`` and task
    (:mod:`neurovfm.analysis.external_run`); ``work_dir`` (``external/{dataset}/benchmark``) written as one
    folder."""
    from neurovfm.analysis.external_run import benchmark, prepare

    _torch_threads(threads)
    encoders = analysis_encoders(cfg, "external")
    nifti_dir, csv = external_source(cfg, dataset)
    seed = int(cfg["seed"] if cfg["analysis"]["seed"] is None else cfg["analysis"]["seed"])
    if transfer_dirs is None:  # the workflow's layout: results/{run}/external/{source}/benchmark
        res = Path(cfg["paths"]["results"]) / cfg["run"] / "external"
        transfer_dirs = {
            (t["dataset"], t["task"]): res / t["dataset"] / "benchmark"
            for t in cfg["analysis"]["external"]["datasets"][dataset]["transfer_from"]
        }
    with atomic_dir(work_dir) as tmp:
        prepare(
            cfg,
            _existing(nifti_dir, "NIfTI folder"),
            _existing(csv, "subjects CSV"),
            tmp,
            private_dir,
            _encoder_files(cfg, encoders),
            _existing(stats_json, "train statistics"),
        )
        table = benchmark(cfg, dataset, tmp, encoders, transfer_dirs, seed)
    write_csv(out_table, table)
    for _, r in table.iterrows():
        log.info(
            "external %s (trained on %s) %s %s %s %s: %.3f [%.3f, %.3f]",
            dataset,
            r["trained_on"],
            r["encoder"],
            r["task"],
            r["metric"],
            r["label"],
            r["value"],
            r["lo"],
            r["hi"],
        )


# -- diagnostic analyses (neurovfm.analysis.diagnostic, .laterality_run) ---------------------------
def laterality_encoders(cfg: dict) -> list[str]:
    """Encoders of the laterality check: ``analysis.laterality.encoders``, else the volumetric models of
    ``pretrain.train`` (re-encoding is the costly step, so the random baseline is opt-in)."""
    explicit = cfg["analysis"]["laterality"]["encoders"]
    return list(explicit or [e for e in cfg["pretrain"]["train"] if is_volumetric(cfg, e)])


def _probe_files(probes_dir, encoders, name: str) -> dict:
    return {(e, m): Path(probes_dir) / e / m / name for e in encoders for m in ("ct", "mri")}


def label_efficiency(cfg: dict, probes_dir, labels_dir, out_csv, out_models_csv) -> None:
    """``tables/label_efficiency.csv`` (per encoder, modality and class) and ``label_efficiency_models.csv``
    (OLS with HC3 per encoder, ANCOVA across encoders, label-equivalence folds)."""
    from neurovfm.analysis.diagnostic import label_efficiency as run

    encoders = probe_encoders(cfg)
    labels = {m: Path(labels_dir) / f"{m}.csv" for m in ("ct", "mri")}
    table, models = run(cfg, encoders, _probe_files(probes_dir, encoders, "predictions.csv"), labels)
    write_csv(out_csv, table)
    write_csv(out_models_csv, models)
    log.info("label efficiency: %d of %d classes included", int(table["included"].sum()), len(table))
    for r in models[models["section"] == "label_equivalence"].itertuples():
        log.info("label equivalence %s: fold %.3f [%.3f, %.3f] %s", r.encoder, r.coef, r.ci_lo, r.ci_hi, r.note)


def cross_modal(cfg: dict, probes_dir, features_dir, labels_dir, out_csv) -> None:
    """``tables/cross_modal.csv``: every encoder's CT probe on MRI test studies and back, vs the native probe."""
    from neurovfm.analysis.diagnostic import cross_modal as run

    labels = {m: Path(labels_dir) / f"{m}.csv" for m in ("ct", "mri")}
    write_csv(out_csv, run(cfg, probe_encoders(cfg), probes_dir, features_dir, labels))


def subgroups(cfg: dict, probes_dir, studies_csv, out_csv, out_means_csv) -> None:
    """``tables/subgroups.csv`` (per class and subgroup cell) and ``subgroups_means.csv``."""
    from neurovfm.analysis.diagnostic import subgroups as run

    encoders = probe_encoders(cfg)
    cells, means = run(cfg, encoders, _probe_files(probes_dir, encoders, "predictions.csv"), studies_csv)
    write_csv(out_csv, cells)
    write_csv(out_means_csv, means)


def laterality(
    cfg: dict,
    probes_dir,
    features_dir,
    labels_dir,
    findings_jsonl,
    test_index,
    stats_json,
    pretrain_dir,
    out_csv,
    out_studies_csv,
    threads: int | None = None,
) -> None:
    """``tables/laterality.csv`` (AUROCs per encoder and modality, pooled ``all``) and ``laterality_studies.csv``
    (logits before and after the left-right flip per re-encoded test study)."""
    import torch

    from neurovfm.analysis.laterality_run import laterality as run
    from neurovfm.features.encoders import RANDOM

    if threads:
        torch.set_num_threads(int(threads))
    encoders = laterality_encoders(cfg)
    pts = {e: Path(pretrain_dir) / e / "encoder.pt" for e in encoders if e != RANDOM}
    labels = {m: Path(labels_dir) / f"{m}.csv" for m in ("ct", "mri")}
    summary, studies = run(cfg, encoders, probes_dir, features_dir, labels, findings_jsonl, test_index, stats_json, pts)
    write_csv(out_csv, summary)
    write_csv(out_studies_csv, studies)


def fig_diagnostic_analysis(cfg: dict, name: str, tables: dict, out_png) -> None:
    """fig2e, fig3c, ed_subgroups or ed_laterality from its tables (``tables``: the rule's named inputs)."""
    from neurovfm.analysis.diagnostic import reference_encoder
    from neurovfm.plots import diagnostic_analyses as plots

    ref = reference_encoder(cfg)
    if name == "fig2e":
        plots.fig2e(tables["table"], tables["models"], probe_encoders(cfg), out_png)
    elif name == "fig3c":
        plots.fig3c(tables["table"], ref, out_png)
    elif name == "ed_subgroups":
        plots.ed_subgroups(tables["table"], ref, cfg["analysis"]["subgroups"]["band"], out_png)
    elif name == "ed_laterality":
        plots.ed_laterality(tables["table"], tables["studies"], out_png)
    else:
        raise ValueError(f"unknown diagnostic analysis figure {name!r}")


# -- report generation (neurovfm.reportgen) ---------------------------------------------------------
def _torch_threads(threads: int | None) -> None:
    import torch

    torch.set_num_threads(max(1, int(threads or 1)))  # more threads than cores oversubscribes the CPU


def reportgen_train(
    cfg: dict,
    size,
    train_index,
    findings_jsonl,
    ct_csv,
    mri_csv,
    reports_jsonl,
    out_dir,
    threads: int | None = None,
    gpus: int = 0,
    text_stage=None,
) -> None:
    """Stage 1 + 2 of the report generator on ``size`` curated pairs (resumes from its checkpoint; stage 0 of the
    demo LM from ``text_stage``, the file of :func:`reportgen_text_stage`, when it fits): in this
    process (gpus 0), else ``torchrun`` over ``gpus`` GPUs of this node running ``neurovfm reportgen train``
    (``reportgen.distributed.strategy``), its output relayed to the rule's log."""
    from neurovfm.reportgen.run import train

    if gpus > 0:
        import yaml

        from neurovfm.jepa.launch import launch_command
        from neurovfm.utils.atomic import write_text

        run_config = Path(out_dir) / "run_config.yaml"
        write_text(run_config, yaml.safe_dump(cfg, sort_keys=False))
        args = [
            "reportgen",
            "train",
            "--config",
            str(run_config),
            "--size",
            str(int(size)),
            "--features",
            str(train_index),
            "--findings",
            str(findings_jsonl),
            "--ct",
            str(ct_csv),
            "--mri",
            str(mri_csv),
            "--reports",
            str(reports_jsonl),
            "--out",
            str(out_dir),
        ]
        if text_stage is not None:
            args += ["--text-stage", str(text_stage)]
        _relay(launch_command(args, gpus=gpus), f"report-generation training (n{size})")
        return
    _torch_threads(threads)
    train(
        cfg,
        int(size),
        _existing(train_index, "feature index"),
        findings_jsonl,
        ct_csv,
        mri_csv,
        reports_jsonl,
        out_dir,
        text_stage=text_stage,
    )


def reportgen_text_stage(cfg: dict, shard_index, findings_jsonl, reports_jsonl, out_path, threads=None) -> None:
    """The demo LM's text-only stage 0, once for every curated size (:mod:`neurovfm.reportgen.text_stage`)."""
    from neurovfm.reportgen.text_stage import train_text_stage

    _torch_threads(threads)
    train_text_stage(cfg, _existing(shard_index, "train shards index"), findings_jsonl, reports_jsonl, out_path)


def reportgen_generate(
    cfg: dict, model_dir, index, findings_jsonl, reports_jsonl, out_jsonl, threads: int | None = None
) -> None:
    from neurovfm.reportgen.run import generate

    _torch_threads(threads)
    generate(cfg, model_dir, _existing(index, "feature index"), findings_jsonl, reports_jsonl, out_jsonl)


def reportgen_baselines(
    cfg: dict,
    model_dir,
    train_index,
    index,
    findings_jsonl,
    reports_jsonl,
    out_prior,
    out_retrieval,
    out_shuffled,
    threads: int | None = None,
) -> None:
    """Prior-only, retrieval and shuffled-image answers beside the main report generator's."""
    from neurovfm.reportgen.run import baselines

    _torch_threads(threads)
    baselines(
        cfg,
        model_dir,
        _existing(train_index, "feature index"),
        _existing(index, "feature index"),
        findings_jsonl,
        reports_jsonl,
        out_prior,
        out_retrieval,
        out_shuffled,
    )


def reportgen_triage_set(
    cfg: dict, findings_jsonl, ct_csv, mri_csv, index, truth_dir, studies_csv, out_set, out_acuity
) -> None:
    """Balanced triage set; acuity from the synthetic truth files when ``truth_dir`` is given."""
    from neurovfm.labels.evaluate import load_truth
    from neurovfm.reportgen.run import triage_set

    truth = None
    if truth_dir:
        import pandas as pd

        ingested = set(pd.read_csv(studies_csv, dtype={"study_id": str})["study_id"])
        key = resolve_key(cfg["deid"], cfg["run"])
        truth = {s: r for s, r in load_truth(truth_dir, key).items() if s in ingested}
    triage_set(cfg, findings_jsonl, ct_csv, mri_csv, index, truth, out_set, out_acuity)


def reportgen_frontier_inputs(
    cfg: dict, triage_set_csv, series_csv, shard_index, reports_jsonl, payload_dir, out_counts, out_generations
) -> None:
    from neurovfm.reportgen.run import frontier_inputs

    frontier_inputs(
        cfg, triage_set_csv, series_csv, shard_index, reports_jsonl, payload_dir, out_counts, out_generations
    )


def reportgen_triage(
    cfg: dict,
    generations: dict,
    frontier_jsonl,
    findings_jsonl,
    reports_jsonl,
    triage_set_csv,
    acuity_csv,
    cache_dir,
    out_predictions,
    out_validation,
) -> None:
    from neurovfm.reportgen.run import triage

    triage(
        cfg,
        generations,
        frontier_jsonl,
        findings_jsonl,
        reports_jsonl,
        triage_set_csv,
        acuity_csv,
        cache_dir,
        out_predictions,
        out_validation,
    )


def reportgen_eval(
    cfg: dict,
    generations: dict,
    frontier_jsonl,
    predictions_csv,
    triage_set_csv,
    findings_jsonl,
    ct_csv,
    mri_csv,
    out_text,
    out_triage,
    out_cost,
    out_scaling,
    out_labels=None,
    out_differences=None,
) -> None:
    from neurovfm.reportgen.run import evaluate

    evaluate(
        cfg,
        generations,
        frontier_jsonl,
        predictions_csv,
        triage_set_csv,
        findings_jsonl,
        ct_csv,
        mri_csv,
        out_text,
        out_triage,
        out_cost,
        out_scaling,
        out_labels,
        out_differences,
    )


def fig_reportgen(cfg: dict, name: str, table_csv, out_png) -> None:
    """fig4b / fig4c (triage table), fig4d (text metrics table) or ed_reportgen_scaling (scaling table)."""
    from neurovfm.plots import reportgen as plots
    from neurovfm.reportgen.naming import main_model

    if name == "ed_reportgen_scaling":
        plots.ed_scaling(table_csv, out_png)
    else:
        getattr(plots, name)(table_csv, main_model(cfg), out_png)


# -- the model bundle (neurovfm.bundle) ---------------------------------------------------------------
def bundle(
    cfg: dict, encoder_pt, stats_json, probes_dir, reportgen_dir, diagnosis_tables, studies_csv, label_csvs, out_dir
) -> dict:
    """``results/{run}/bundle/``: ``probes_dir`` holds ``ct/`` and ``mri/``; ``diagnosis_tables`` and
    ``label_csvs`` are the CT then MRI files. Returns the manifest."""
    from neurovfm.bundle.write import build_bundle

    mods = ("ct", "mri")
    return build_bundle(
        cfg,
        encoder_pt=_existing(encoder_pt, "encoder.pt"),
        stats_json=stats_json,
        probe_dirs={m: Path(probes_dir) / m for m in mods},
        reportgen_dir=reportgen_dir,
        diagnosis_tables=dict(zip(mods, map(str, diagnosis_tables))),
        studies_csv=studies_csv,
        label_csvs=dict(zip(mods, map(str, label_csvs))),
        out_dir=out_dir,
    )


# -- the scaling grid, Fig. 2b (neurovfm.scaling_grid, neurovfm.analysis.scaling) ---------------------------------
def encoder_parameters(cfg: dict, models: list[str]) -> dict[str, int]:
    """Encoder size -> parameters of the encoder of the first of ``models`` with that size (built on the meta
    device: no memory, no weights)."""
    import torch

    from neurovfm.jepa.build import build_models, model_config

    out = {}
    with torch.device("meta"):
        for name in models:
            model = model_config(cfg["pretrain"], name, cfg["preprocess"]["patch"])
            if model["encoder"] not in out:
                encoder = build_models(model, encoder_only=True)
                out[model["encoder"]] = int(sum(p.numel() for p in encoder.parameters()))
    return out


def scaling_table(cfg: dict, results_dir, out_csv) -> None:
    """``tables/scaling.csv``: the grid's mean AUROCs (points), the log-linear fit per size and modality with its
    paired bootstrap interval (fits), and multimodal - unimodal (unimodal); reads the files of
    :func:`neurovfm.scaling_grid.table_files` under ``results_dir`` (``results/{run}``)."""
    from dataclasses import asdict

    from neurovfm.analysis.scaling import scaling_table as run
    from neurovfm.scaling_grid import grid, table_files, unimodal_pairs

    models = grid(cfg)
    if not models:
        raise ValueError("scaling.models is empty: the scaling grid has no model (config.yaml, scaling:)")
    files = table_files(cfg, str(results_dir))
    ev = cfg["probes"]["eval"]
    table = run(
        [asdict(m) for m in models],
        {k: _existing(v, "category table") for k, v in files["categories"].items()},
        {k: _existing(v, "predictions") for k, v in files["predictions"].items()},
        {k: _existing(v, "comparison table") for k, v in files["comparisons"].items()},
        unimodal_pairs(cfg),
        encoder_parameters(cfg, [m.name for m in models]),
        n_boot=int(ev["n_boot"]),
        seed=_eval_seed(cfg),
        min_pos=int(ev["min_pos"]),
        alpha=float(ev["alpha"]),
    )
    write_csv(out_csv, table)
    for r in table[table["section"] == "fit"].itertuples():
        log.info(
            "%s %s: mean AUROC slope per 10x data %.4f [%.4f, %.4f] (%s)",
            r.size,
            r.modality,
            r.slope,
            r.slope_lo,
            r.slope_hi,
            r.status,
        )
    for r in table[table["section"] == "unimodal"].itertuples():
        log.info(
            "%s: %s - %s mean AUROC %.4f [%.4f, %.4f]",
            r.modality,
            r.model,
            r.compared_with,
            r.delta,
            r.delta_lo,
            r.delta_hi,
        )


def fig2b(cfg: dict, table_csv, out_png) -> None:
    """Fig. 2b from ``tables/scaling.csv``."""
    from neurovfm.plots.scaling import fig2b as draw

    draw(_existing(table_csv, "scaling table"), out_png)
