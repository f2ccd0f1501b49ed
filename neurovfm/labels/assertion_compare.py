"""Hand-written assertion cues vs medspaCy's ConText, on both report banks (issue 17's comparison).

The rule extractor's concept spans, labels and statuses are dumped (``dump``, project environment); ConText
(medspaCy, its packaged default rules, a blank English tokenizer: nothing is downloaded) assigns its own
status to the same spans (``context``, an environment with medspaCy); ``score`` rebuilds the labels of each
report with either back end and scores them per bank and modality. Only the assertion step differs.

medspaCy 1.3.1 pins spaCy < 3.8, whose thinc needs numpy < 2, so it cannot join the project's environment
(numpy 2); run the middle step in its own virtual environment, by file path (it imports no project code)::

    python -m neurovfm.labels.assertion_compare dump --n 600 --out /tmp/spans.json
    /tmp/ctxvenv/bin/python neurovfm/labels/assertion_compare.py context /tmp/spans.json /tmp/ctx.json
    python -m neurovfm.labels.assertion_compare score /tmp/ctx.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def dump(n_studies: int, seed: int, out: str) -> None:
    from .generalisation import cohort_cases
    from .rules import RuleExtractor, _find_spans, _is_heading
    from .text import DIAGNOSTIC_SECTIONS, split_sections, split_sentences

    rx = RuleExtractor()
    rows = []
    for case in cohort_cases(n_studies, seed):
        secs = [s for s in split_sections(case.text) if s.kind in DIAGNOSTIC_SECTIONS]
        ctx = " ".join([case.indication] + [s.text for s in secs])
        sentences = []
        for sec in secs:
            for sent in split_sentences(sec.text):
                if _is_heading(sent, rx.cues.heading_max_words):
                    continue
                spans = _find_spans(sent, rx.concepts)
                found = rx.mentions(sent, case.modality, sec.kind, ctx)
                sentences.append(
                    {
                        "text": sent,
                        "spans": [
                            [s, e, c.key, c.history_negates, list(m.labels), m.status]
                            for (s, e, c), m in zip(spans, found)
                        ],
                    }
                )
        rows.append(
            {"bank": case.bank, "modality": case.modality, "labels": sorted(case.labels), "sentences": sentences}
        )
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(rows, fh)


def context(spans_json: str, out: str) -> None:
    """ConText's status of every dumped span (needs spaCy and medspaCy; no project imports)."""
    import spacy
    from medspacy.context import ConText

    with open(spans_json, encoding="utf-8") as fh:
        rows = json.load(fh)
    nlp = spacy.blank("en")
    ctx = ConText(nlp, rules="default")
    start = time.process_time()
    for r in rows:
        for s in r["sentences"]:
            doc = nlp(s["text"])
            for tok in doc:  # one dumped sentence is one ConText sentence
                tok.is_sent_start = tok.i == 0
            ents, index = [], []
            for i, (a, b, *_rest) in enumerate(s["spans"]):
                sp = doc.char_span(a, b, label="CONCEPT", alignment_mode="expand")
                if sp is not None and not any(sp.start < e.end and e.start < sp.end for e in ents):
                    ents.append(sp)
                    index.append(i)
            doc.ents = ents
            doc = ctx(doc)
            status = {}
            for ent, i in zip(doc.ents, index):
                if ent._.is_negated:
                    status[i] = "negated"
                elif ent._.is_hypothetical:
                    status[i] = "hypothetical"
                elif ent._.is_uncertain:
                    status[i] = "hedged"
                elif ent._.is_family:
                    status[i] = "family"
                elif ent._.is_historical and s["spans"][i][3]:  # history only negates event-type concepts
                    status[i] = "historical"
                else:
                    status[i] = "positive"
            s["context"] = [status.get(i, "positive") for i in range(len(s["spans"]))]
    cpu = time.process_time() - start
    with open(out, "w", encoding="utf-8") as fh:
        json.dump({"rows": rows, "cpu_s": cpu}, fh)
    print(f"ConText: {len(rows)} reports in {cpu:.2f} s CPU ({len(rows) / cpu:.0f} reports/s, tokenizing included)")


def score(context_json: str):
    import pandas as pd

    from .evaluate import label_matrix, score_matrix
    from .ontology import load_ontology

    with open(context_json, encoding="utf-8") as fh:
        rows = json.load(fh)["rows"]
    out = []
    for back in ("hand-written", "context"):
        for bank in ("development", "unseen"):
            for modality in ("CT", "MR"):
                sub = [r for r in rows if r["bank"] == bank and r["modality"] == modality]
                if not sub:
                    continue
                onto = load_ontology(modality)
                predicted = []
                for r in sub:
                    pos = set()
                    for s in r["sentences"]:
                        for j, sp in enumerate(s["spans"]):
                            if (sp[5] if back == "hand-written" else s["context"][j]) == "positive":
                                pos |= set(sp[4])
                    predicted.append(pos | {a for lab in pos for a in onto.ancestors(lab)})
                t = label_matrix([r["labels"] for r in sub], onto.names)
                p = label_matrix(predicted, onto.names)
                tab = score_matrix(t, p, onto.names, modality).set_index("label")
                out.append(
                    {
                        "assertion": back,
                        "bank": bank,
                        "modality": modality,
                        "n_reports": len(sub),
                        "macro_f1": tab.loc["macro", "f1"],
                        "fp_per_report": tab.loc["micro", "fp"] / len(sub),
                        "fn_per_report": tab.loc["micro", "fn"] / len(sub),
                    }
                )
    table = pd.DataFrame(out)
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    return table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump")
    d.add_argument("--n", type=int, default=600)
    d.add_argument("--seed", type=int, default=20251206)
    d.add_argument("--out", required=True)
    c = sub.add_parser("context")
    c.add_argument("spans_json")
    c.add_argument("out")
    s = sub.add_parser("score")
    s.add_argument("context_json")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "dump":
            dump(args.n, args.seed, args.out)
        elif args.cmd == "context":
            context(args.spans_json, args.out)
        else:
            score(args.context_json)
    except ImportError as exc:
        print(
            f"error: {exc.name} is not installed here (the context step needs medspaCy in its own environment)",
            file=sys.stderr,
        )
        return 2
    except (OSError, json.JSONDecodeError, KeyError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
