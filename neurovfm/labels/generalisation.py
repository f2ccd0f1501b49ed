"""Does the rule extractor hold on reports it was not developed against? Both report banks, one cohort.

The synthetic cohort's studies are written twice: by the pipeline's writer (bank A, ``synth.reports``:
the development bank) and by writer B (``synth.reports_unseen``: the unseen bank). Per bank and
modality: label precision / recall / F1 (``evaluate.score_matrix``), false positives per report,
laterality of the lateralised true positives, triage of the key findings by the rule judge (accuracy,
urgent sensitivity), and extraction speed (reports per second on one core).

``python -m neurovfm.labels.generalisation --n 600 --out /tmp/gen.csv`` prints and writes the table.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from neurovfm.synth.catalog import CATALOG
from neurovfm.utils.atomic import write_csv

from .evaluate import label_matrix, score_matrix
from .findings import FindingsExtractor
from .ontology import load_ontology
from .rules import RuleExtractor

BANKS = ("development", "unseen")


@dataclass
class Case:
    """One report of one bank with its ground truth."""

    bank: str
    modality: str
    text: str
    indication: str
    labels: set
    sides: dict  # label -> truth side, for labels that only lateralised findings give
    triage: str


def truth_sides(modality: str, findings: list[dict]) -> dict[str, str]:
    """{label: side} of the labels given only by lateralised findings with a side (two sides: bilateral)."""
    sides: dict[str, set] = {}
    unsided: set = set()
    for f in findings:
        kind = CATALOG[f["kind"]]
        labels = kind.ct_labels if modality == "CT" else kind.mri_labels
        side = f.get("side")
        for lab in labels:
            if kind.lateralised and side in ("left", "right", "bilateral"):
                sides.setdefault(lab, set()).add(side)
            else:
                unsided.add(lab)
    return {
        lab: ("bilateral" if "bilateral" in s or len(s) > 1 else next(iter(s)))
        for lab, s in sides.items()
        if lab not in unsided
    }


def cohort_cases(n_studies: int, seed: int) -> list[Case]:
    """Both banks' reports of a fresh synthetic cohort of ``n_studies`` (no rendering)."""
    from neurovfm.config import default_config
    from neurovfm.synth.cohort import build_cohort
    from neurovfm.synth.export import synth_settings
    from neurovfm.synth.reports import write_report
    from neurovfm.synth.reports_unseen import from_plan, write_unseen_report

    plans = build_cohort(synth_settings(default_config(synth={"n_studies": int(n_studies)})), seed)
    out = []
    for p in plans:
        labels, sides = set(p.labels), truth_sides(p.modality, p.findings)
        dev = write_report(p, [dict(f) for f in p.findings], np.random.default_rng([seed, p.index, 0])).text
        unseen = write_unseen_report(from_plan(p), np.random.default_rng([seed, p.index, 1])).text
        for bank, text in zip(BANKS, (dev, unseen)):
            out.append(Case(bank, p.modality, text, p.indication, labels, sides, p.triage))
    return out


def score_cases(cases: list[Case], judge=None) -> pd.DataFrame:
    """One row per (bank, modality): macro / micro F1, false positives per report, laterality, triage, speed."""
    from neurovfm.reportgen.triage import RuleJudge

    rx = RuleExtractor()
    fx = FindingsExtractor(rx)
    judge = judge or RuleJudge.from_defaults()
    rows = []
    for bank in BANKS:
        for modality in ("CT", "MR"):
            sub = [c for c in cases if c.bank == bank and c.modality == modality]
            if not sub:
                continue
            onto = load_ontology(modality)
            side_ok = side_n = 0
            start = time.process_time()
            results = [rx.extract(c.text, modality, c.indication) for c in sub]
            cpu = time.process_time() - start
            t = label_matrix([c.labels for c in sub], onto.names)
            p = label_matrix([[lab for lab, v in r.items() if v["present"]] for r in results], onto.names)
            for c, r in zip(sub, results):
                for lab, side in c.sides.items():
                    if r[lab]["present"]:
                        side_n += 1
                        side_ok += r[lab]["side"] == side
            table = score_matrix(t, p, onto.names, modality)
            macro = table[table.label == "macro"].iloc[0]
            micro = table[table.label == "micro"].iloc[0]
            truth_triage = np.array([c.triage for c in sub])
            pred_triage = np.array(
                [judge.triage(fx.extract(c.text, modality, c.indication), c.indication, modality) for c in sub]
            )
            urgent = truth_triage == "urgent"
            rows.append(
                {
                    "bank": bank,
                    "modality": modality,
                    "n_reports": len(sub),
                    "macro_f1": float(macro.f1),
                    "micro_f1": float(micro.f1),
                    "fp_per_report": float(micro.fp) / len(sub),
                    "fn_per_report": float(micro.fn) / len(sub),
                    "laterality_accuracy": side_ok / side_n if side_n else float("nan"),
                    "n_lateralised": side_n,
                    "triage_accuracy": float((pred_triage == truth_triage).mean()),
                    "urgent_sensitivity": float((pred_triage[urgent] == "urgent").mean())
                    if urgent.any()
                    else float("nan"),
                    "reports_per_s_per_core": len(sub) / cpu if cpu > 0 else float("nan"),
                }
            )
    return pd.DataFrame(rows)


def errors(cases: list[Case], bank: str, limit: int = 40) -> list[str]:
    """Readable false positives / negatives of one bank (for development on bank A only)."""
    rx = RuleExtractor()
    out = []
    for c in cases:
        if c.bank != bank:
            continue
        r = rx.extract(c.text, c.modality, c.indication)
        pred = {k for k, v in r.items() if v["present"]}
        for lab in sorted(pred - c.labels):
            out.append(f"FP {c.modality} {lab}: {r[lab]['evidence']}")
        for lab in sorted(c.labels - pred):
            out.append(f"FN {c.modality} {lab}")
        for lab, side in c.sides.items():
            if r[lab]["present"] and r[lab]["side"] != side:
                out.append(f"SIDE {c.modality} {lab}: truth {side}, got {r[lab]['side']}: {r[lab]['evidence']}")
    return out[:limit]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=600, help="studies in the cohort (each written by both banks)")
    ap.add_argument("--seed", type=int, default=20251206)
    ap.add_argument("--out", type=Path, default=None, help="CSV to write (atomically)")
    ap.add_argument("--errors", choices=BANKS, default=None, help="print this bank's errors")
    args = ap.parse_args(argv)
    if args.n < 1:
        print("error: --n must be at least 1", file=sys.stderr)
        return 2
    cases = cohort_cases(args.n, args.seed)
    table = score_cases(cases)
    pd.set_option("display.width", 200)
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    if args.errors:
        print("\n".join(errors(cases, args.errors)))
    if args.out:
        write_csv(args.out, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
