"""``neurovfm`` command line: the steps a person runs by hand, with the same code the workflow runs.

Every subcommand reads the run configuration (``--config``, default ``config.yaml``), accepts
``--set section.key=value`` overrides (values parsed as YAML) and writes where the workflow would,
unless told otherwise.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import yaml

from neurovfm import pipeline
from neurovfm.config import ConfigError, load_config, prepared, private_dir, run_dir, validate
from neurovfm.utils.progress import setup_logging
from neurovfm.utils.stage import report


def _apply_overrides(cfg: dict, pairs: list[str]) -> dict:
    cfg = copy.deepcopy(cfg)
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set expects section.key=value, got {pair!r}")
        dotted, raw = pair.split("=", 1)
        node = cfg
        keys = dotted.split(".")
        for k in keys[:-1]:
            if not isinstance(node.get(k), dict):
                raise ConfigError(f"--set {dotted}: {k!r} is not a section of the configuration")
            node = node[k]
        node[keys[-1]] = yaml.safe_load(raw)
    return validate(cfg)


def _config(args) -> dict:
    # the scaling grid is expanded after the overrides, which may change it
    return prepared(_apply_overrides(load_config(args.config, grid=False), args.set or []))


def _cmd_synth(args) -> int:
    cfg = _config(args)
    out = Path(args.out) if args.out else run_dir(cfg) / "pacs_export"
    manifest = pipeline.synth(cfg, out, threads=args.workers)
    print(json.dumps({k: v for k, v in manifest.items() if k != "config"}, indent=2, default=str))
    return 0


def _cmd_ingest(args) -> int:
    cfg = _config(args)
    synthetic = cfg["input"]["dicom_dir"] is None
    dicom_dir = args.dicom_dir or (run_dir(cfg) / "pacs_export" / "dicom" if synthetic else cfg["input"]["dicom_dir"])
    reports = args.reports_csv or (
        run_dir(cfg) / "pacs_export" / "reports.csv" if synthetic else cfg["input"]["reports_csv"]
    )
    out = Path(args.out) if args.out else run_dir(cfg) / "ingest"
    summary = pipeline.ingest(cfg, dicom_dir, reports, out, private_dir(cfg), threads=args.workers)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _cmd_preprocess(args) -> int:
    cfg = _config(args)
    nifti = cfg["input"]["kind"] == "nifti"
    synthetic = not nifti and cfg["input"]["dicom_dir"] is None
    root = args.export_root or (
        cfg["input"]["nifti_dir"]
        if nifti
        else run_dir(cfg) / "pacs_export" / "dicom"
        if synthetic
        else cfg["input"]["dicom_dir"]
    )
    ingest = run_dir(cfg) / "ingest"
    out = Path(args.out) if args.out else run_dir(cfg) / "shards"
    summary = pipeline.preprocess(
        cfg,
        args.series or ingest / "series.csv",
        args.files or private_dir(cfg) / "files.csv",
        root,
        out,
        threads=args.workers,
    )
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _cmd_labels(args) -> int:
    cfg = _config(args)
    reports = args.reports or private_dir(cfg) / "reports.jsonl"
    studies = args.studies or run_dir(cfg) / "ingest" / "studies.csv"
    out = Path(args.out) if args.out else run_dir(cfg) / "labels"
    summary = pipeline.labels(cfg, reports, studies, out, private_dir(cfg))
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _cmd_jepa_train(args) -> int:
    import logging
    import os

    from neurovfm.jepa.train import NonFiniteLossError

    cfg = _config(args)
    rank = int(os.environ.get("RANK", "0"))
    if rank != 0:  # under torchrun only rank 0 reports progress and the result
        logging.getLogger("neurovfm").setLevel(logging.WARNING)
    shards = run_dir(cfg) / "shards" / "train"
    out = Path(args.out) if args.out else run_dir(cfg) / "pretrain" / args.model
    try:
        result = pipeline.pretrain(
            cfg,
            args.model,
            args.index or shards / "index.json",
            args.stats or shards / "stats.json",
            out,
            threads=args.threads,
            findings=args.findings,
            reports=args.reports,
        )
    except NonFiniteLossError as err:
        print(f"neurovfm: {err}", file=sys.stderr)
        return 3
    if rank == 0:
        print(json.dumps(result, indent=2, default=str))
    return 0


def _cmd_reportgen_train(args) -> int:
    import logging
    import os

    from neurovfm.reportgen.naming import encoders

    cfg = _config(args)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 reports progress
        logging.getLogger("neurovfm").setLevel(logging.WARNING)
    encoder = args.encoder or encoders(cfg)[0]
    labels = run_dir(cfg) / "labels"
    pipeline.reportgen_train(
        cfg,
        args.size,
        args.features or run_dir(cfg) / "features" / encoder / "train" / "index.json",
        args.findings or labels / "findings.jsonl",
        args.ct or labels / "ct.csv",
        args.mri or labels / "mri.csv",
        args.reports or private_dir(cfg) / "reports.jsonl",
        args.out or run_dir(cfg) / "reportgen" / encoder / f"n{args.size}",
        threads=args.threads,
        text_stage=args.text_stage,
    )
    return 0


def _cmd_predict(args) -> int:
    import logging

    from neurovfm.predict.batch import run

    if not args.verbose:  # one progress line per study; the steps' own logging only when asked
        logging.getLogger("neurovfm").setLevel(logging.WARNING)
    records = run(
        args.bundle,
        args.inputs,
        args.out,
        keep_identifiers=args.keep_identifiers,
        modality=args.modality,
        sequence=args.sequence,
        work_dir=args.work_dir,
        workers=args.workers,
        indication=args.indication,
    )
    print(f"{len(records)} stud{'y' if len(records) == 1 else 'ies'} predicted; outputs in {args.out}")
    return 0


def _cmd_check_config(args) -> int:
    _config(args)
    print(f"{args.config or 'default configuration'}: valid")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neurovfm", description="neurovfm: steps of the NeuroVFM reproduction that users run by hand."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--config",
            help="run configuration, deep-merged over the checkout's config.yaml (a file "
            "may hold only the keys it changes, as with snakemake --configfile; default: the defaults)",
        )
        p.add_argument(
            "--set",
            action="append",
            metavar="KEY=VALUE",
            help="override a configuration value, e.g. --set synth.n_studies=20 (repeatable)",
        )
        p.add_argument("--log", help="also write the log to this file")

    p = sub.add_parser("synth", help="write the embedded synthetic health system (a PACS export)")
    common(p)
    p.add_argument("--out", help="export folder (default: results/{run}/pacs_export)")
    p.add_argument("--workers", type=int, help="processes (default: synth.workers or all cores)")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("ingest", help="header-only ingestion of a DICOM export into de-identified manifests")
    common(p)
    p.add_argument("--dicom-dir", help="export root (default: input.dicom_dir or the synthetic export)")
    p.add_argument("--reports-csv", help="report CSV (default: input.reports_csv or the synthetic one)")
    p.add_argument("--out", help="output folder (default: results/{run}/ingest)")
    p.add_argument("--workers", type=int, help="processes (default: ingest.workers or all cores)")
    p.set_defaults(func=_cmd_ingest)

    p = sub.add_parser("preprocess", help="resample, window and quantise the ingested series into shards")
    common(p)
    p.add_argument("--series", help="series.csv written by ingest (default: results/{run}/ingest/series.csv)")
    p.add_argument("--files", help="private files.csv written by ingest (default: private/{run}/files.csv)")
    p.add_argument("--export-root", help="folder the paths of files.csv are relative to (default: from input)")
    p.add_argument("--out", help="output folder (default: results/{run}/shards)")
    p.add_argument("--workers", type=int, help="processes (default: preprocess.workers or all cores)")
    p.set_defaults(func=_cmd_preprocess)

    p = sub.add_parser("labels", help="diagnosis labels and key findings from the ingested reports")
    common(p)
    p.add_argument("--reports", help="private reports.jsonl written by ingest")
    p.add_argument("--studies", help="studies.csv written by ingest")
    p.add_argument("--out", help="output folder (default: results/{run}/labels)")
    p.set_defaults(func=_cmd_labels)

    p = sub.add_parser("jepa", help="pretraining (Vol-JEPA, or the model's objective: VideoMAE, HLIP)")
    jepa = p.add_subparsers(dest="jepa_command", required=True)
    p = jepa.add_parser("train", help="pretrain an encoder (one process, or one rank under torchrun)")
    common(p)
    p.add_argument("--model", required=True, help="a key of pretrain.models, e.g. tiny")
    p.add_argument("--index", help="train index.json (default: results/{run}/shards/train/index.json)")
    p.add_argument("--stats", help="train stats.json (default: next to the train index)")
    p.add_argument("--out", help="output folder (default: results/{run}/pretrain/{model})")
    p.add_argument("--threads", type=int, help="CPU threads of this process (default: torch's choice)")
    p.add_argument("--findings", help="labels/findings.jsonl (an HLIP model with text.source findings)")
    p.add_argument("--reports", help="the private reports.jsonl (an HLIP model with text.source report)")
    p.set_defaults(func=_cmd_jepa_train)

    p = sub.add_parser("reportgen", help="report generation")
    rg = p.add_subparsers(dest="reportgen_command", required=True)
    p = rg.add_parser("train", help="train the report generator (one process, or one rank under torchrun)")
    common(p)
    p.add_argument("--size", type=int, required=True, help="curated training-set size, e.g. a value of reportgen.sizes")
    p.add_argument("--encoder", help="feature encoder (default: the first of reportgen.encoders / pretrain.train)")
    p.add_argument("--features", help="train feature index.json (default: results/{run}/features/{encoder}/train/)")
    p.add_argument("--findings", help="findings.jsonl (default: results/{run}/labels/findings.jsonl)")
    p.add_argument("--ct", help="CT label table (default: results/{run}/labels/ct.csv)")
    p.add_argument("--mri", help="MRI label table (default: results/{run}/labels/mri.csv)")
    p.add_argument("--reports", help="private reports.jsonl (default: private/{run}/reports.jsonl)")
    p.add_argument("--out", help="output folder (default: results/{run}/reportgen/{encoder}/n{size})")
    p.add_argument("--text-stage", help="the demo LM's stage 0 from this file of the text-stage job (if it fits)")
    p.add_argument("--threads", type=int, help="CPU threads of this process (default: 1)")
    p.set_defaults(func=_cmd_reportgen_train)

    p = sub.add_parser("predict", help="run a model bundle on DICOM folders (one study or many) or NIfTI files")
    p.add_argument("--bundle", required=True, help="bundle folder (results/{run}/bundle) or a Hugging Face-style copy")
    p.add_argument("--out", required=True, help="output folder: {study_id}/prediction.json, summary.png/.pdf")
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="a DICOM folder (any nesting), a folder of many studies, or a .nii/.nii.gz file",
    )
    p.add_argument(
        "--keep-identifiers",
        action="store_true",
        help="also write the header identifiers and the input path into prediction.json (off: hashed ids only)",
    )
    p.add_argument("--modality", choices=["CT", "MR"], help="modality of NIfTI inputs (their headers do not say)")
    p.add_argument("--sequence", help="sequence of NIfTI inputs (t1, t1c, t2, flair, dwi, swi, ct, ...)")
    p.add_argument(
        "--indication",
        help="the clinical indication, given to the report generator's prompt (the workflow's `indication` variant) "
        "for every study of the inputs; recorded as given, never written out",
    )
    p.add_argument("--work-dir", help="private scratch folder (default: the system's temporary folder)")
    p.add_argument("--workers", type=int, default=1, help="processes for reading and preprocessing (default 1)")
    p.add_argument("--verbose", action="store_true", help="also print the steps' log lines")
    p.add_argument("--log", help="also write the log to this file")
    p.set_defaults(func=_cmd_predict, config=None, set=None)

    p = sub.add_parser("check-config", help="validate a configuration file against the schema")
    common(p)
    p.set_defaults(func=_cmd_check_config)
    return parser


def _stage(args) -> str:
    sub = getattr(args, "jepa_command", None) or getattr(args, "reportgen_command", None)
    return f"{args.command}_{sub}" if sub else args.command


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; any failure ends as one line on stderr (no traceback), a reason code and PHI-free
    detail in the log, and the raw message in private/{run}/errors/ (neurovfm.utils.stage)."""
    args = build_parser().parse_args(argv)
    setup_logging(getattr(args, "log", None))
    try:
        return args.func(args)
    except (SystemExit, KeyboardInterrupt):
        raise
    except Exception as err:  # every failure of a command ends here, whatever its type
        try:
            cfg = _config(args)
        except ConfigError:
            cfg = None
        return report(_stage(args), err, cfg)


if __name__ == "__main__":
    sys.exit(main())
