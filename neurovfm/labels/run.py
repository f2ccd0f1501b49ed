"""`neurovfm labels`: reports -> diagnosis tables (ct.csv, mri.csv), key findings, an error ledger.

Only studies that ingest kept and that have a non-empty report get labels; the others serve
pretraining only. A report the extractor cannot label (LLM reply invalid after retries, unreadable
line) is recorded in ``extract_errors.csv`` (study id, reason code, detail: no report text) and left out
of the tables rather than written as all-negative.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from ..utils.atomic import atomic_open, write_csv
from ..utils.failure import describe, keep_raw
from ..utils.progress import Progress
from .findings import FindingsExtractor, laterality
from .llm import LLMExtractor, client_from_config, llm_findings, map_reports
from .ontology import OntologyError, load_ontology, normalise_modality
from .rules import RuleExtractor

log = logging.getLogger("neurovfm.labels")
_TABLES = {"CT": "ct.csv", "MR": "mri.csv"}


def read_reports(reports_jsonl: str | Path) -> tuple[list[dict], list[dict]]:
    """(reports, errors); a malformed line becomes an error row instead of stopping the run."""
    reports, errors, seen = [], [], set()
    with open(reports_jsonl, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                errors.append({"study_id": "", "reason": "bad_json_line", "detail": f"line {lineno}: {err.msg}"})
                continue
            sid = str(rec.get("study_id") or "")
            if not sid:
                errors.append({"study_id": "", "reason": "no_study_id", "detail": f"line {lineno}"})
            elif sid in seen:
                errors.append(
                    {"study_id": sid, "reason": "duplicate_report", "detail": f"line {lineno}: kept the first"}
                )
            else:
                seen.add(sid)
                reports.append(rec)
    return reports, errors


def run_labels(reports_jsonl, studies_csv, out_dir, cfg: dict, private_dir) -> dict:
    """Write ``ct.csv``, ``mri.csv``, ``findings.jsonl`` and ``extract_errors.csv`` under ``out_dir``.

    ``cfg`` is the ``labels`` config section (a full config with a ``labels`` key is accepted too).
    ``private_dir`` holds the LLM reply cache (report-derived text).
    """
    cfg = cfg.get("labels", cfg)
    out_dir = Path(out_dir)
    studies = pd.read_csv(studies_csv, dtype={"study_id": str, "split": str})
    reports, errors = read_reports(reports_jsonl)
    meta = {}
    for r in studies.itertuples():
        try:
            meta[r.study_id] = (normalise_modality(r.modality), r.split)
        except OntologyError as err:
            keep_raw(private_dir, "labels", err, str(r.study_id))
            errors.append(
                {
                    "study_id": r.study_id,
                    "reason": "unknown_modality",
                    "detail": "the study's modality is neither CT nor MR",
                }
            )

    known = set(studies["study_id"])
    todo = []
    for rec in reports:
        sid = str(rec["study_id"])
        text = rec.get("report_text")
        if sid not in meta and sid in known:
            continue  # its modality is unknown: already recorded
        if sid not in meta:
            errors.append({"study_id": sid, "reason": "study_not_ingested", "detail": "no included volume"})
        elif not isinstance(text, str) or not text.strip():
            errors.append({"study_id": sid, "reason": "empty_report", "detail": "report text is empty"})
        else:
            todo.append(
                {
                    "study_id": sid,
                    "modality": meta[sid][0],
                    "split": meta[sid][1],
                    "text": text,
                    "indication": rec.get("indication") or "",
                }
            )
    todo.sort(key=lambda r: r["study_id"])

    rules = RuleExtractor()
    extractor_kind = cfg["extractor"]
    client = None
    if extractor_kind == "llm":
        client = client_from_config(cfg["llm"], Path(private_dir) / "llm_cache")
        extractor = LLMExtractor(client)
    elif extractor_kind == "rules":
        extractor = rules
    else:
        raise ValueError(f"labels.extractor must be 'rules' or 'llm', not {extractor_kind!r}")

    log.info("labels: %d reports to label with the %s extractor (%d set aside)", len(todo), extractor_kind, len(errors))
    prog = Progress(len(todo), "labels", log, unit="reports")

    def one(r):
        res = extractor.extract(r["text"], r["modality"], r["indication"])
        prog.update()
        return res

    if client is not None:
        outcomes = map_reports(one, todo, int(cfg["llm"]["max_workers"]), private_dir, "labels")
    else:
        outcomes = []
        for r in todo:
            try:
                outcomes.append((one(r), None))
            except (ValueError, KeyError) as err:  # the message may quote the report: code only here
                keep_raw(private_dir, "labels", err, str(r["study_id"]))
                outcomes.append((None, describe(err).line()))
    prog.close()

    findings_mode = cfg["findings"]
    finder = FindingsExtractor(rules)
    rows = {m: [] for m in _TABLES}
    lines = []
    for r, (res, err) in zip(todo, outcomes):
        if err is not None:
            errors.append({"study_id": r["study_id"], "reason": "extractor_failed", "detail": err})
            continue
        names = load_ontology(r["modality"]).names
        rows[r["modality"]].append([r["study_id"], r["split"]] + [int(res[n]["present"]) for n in names])
        rule_res = res if extractor is rules else rules.extract(r["text"], r["modality"], r["indication"])
        sides = {k: v for k, v in laterality(rule_res).items() if res[k]["present"]}
        if findings_mode == "llm" and client is not None:
            items = llm_findings(client, r["text"])
        else:
            items = finder.extract(r["text"], r["modality"], r["indication"])
        lines.append(
            {
                "study_id": r["study_id"],
                "modality": r["modality"],
                "split": r["split"],
                "findings": items,
                "laterality": sides,
            }
        )

    summary = {"n_reports": len(reports), "n_errors": len(errors), "extractor": extractor_kind}
    for m, fname in _TABLES.items():
        names = load_ontology(m).names
        df = pd.DataFrame(rows[m], columns=["study_id", "split"] + names)
        write_csv(out_dir / fname, df)
        summary[f"n_{fname[:-4]}"] = len(df)
        summary[f"positives_{fname[:-4]}"] = {n: int(df[n].sum()) for n in names if len(df) and df[n].sum()}
    with atomic_open(out_dir / "findings.jsonl", "w", encoding="utf-8") as fh:
        for line in lines:
            fh.write(json.dumps(line, sort_keys=False) + "\n")
    err_df = pd.DataFrame(errors, columns=["study_id", "reason", "detail"])
    write_csv(out_dir / "extract_errors.csv", err_df.sort_values(["reason", "study_id"], kind="stable"))
    summary["errors_by_reason"] = err_df["reason"].value_counts().to_dict()
    log.info("labels: wrote %d CT and %d MRI rows, %d errors", summary["n_ct"], summary["n_mri"], len(errors))
    return summary
