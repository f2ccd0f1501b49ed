"""Why does the demo's report generator degenerate? Train variants on the train split and score them on the
validation split only (the triage set is drawn from the test split).

Per variant (a name and a JSON override of the config, e.g. ``{"reportgen": {"stage2": {"epochs": 12}}}``):

1. train both stages on the curated pairs of ``--size`` (``neurovfm.reportgen.train.Trainer``; a finished
   variant is reused);
2. **does the image reach the LM**: the stage-2 answer-token loss of every validation study with its own series
   and with the series of another study of the same modality (a derangement, fixed seed), paired, with a 95%
   study-bootstrap interval of the difference (if the interval holds zero the model ignores the image); the
   gradient norm of that loss into the connector against the LLM's;
3. **generation**: for each decoding setting (``--decode NAME JSON``, keys of ``reportgen.generation``) and prompt
   (without and with the indication), the share of answers that are one sentence repeated, the number of distinct
   answers, malformed answers, the label-level micro / macro F1 of the findings against the reference findings
   (project's rule extractor), and the micro F1 minus that of the same model answering from another study's series
   (the shuffled-image control, paired by study, 95% bootstrap interval), and the rule judge's triage of the answers
   against the synthetic export's truth acuity (accuracy, balanced accuracy, urgent sensitivity).

    python benchmarks/reportgen_diagnose.py benchmarks/results/reportgen_diagnose --run-dir results/demo \\
        --encoder random --size 512 --work /tmp/rgdiag --variant default '{}' \\
        --variant long '{"reportgen": {"stage1": {"epochs": 4}, "stage2": {"epochs": 12}}}'
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from neurovfm.config import default_config, merged
from neurovfm.eval import bootstrap_indices, percentile_ci
from neurovfm.ingest.deid import resolve_key
from neurovfm.labels.evaluate import load_truth
from neurovfm.reportgen.balanced import acuity_from_truth
from neurovfm.reportgen.baselines import derangement, prior_only
from neurovfm.reportgen.data import StudyTokens, load_findings, load_indications
from neurovfm.reportgen.generate import Generator, parse_findings
from neurovfm.reportgen.label_head import label_targets, uses_label_loss
from neurovfm.reportgen.prompt import encode, stage2_target
from neurovfm.reportgen.quality import LabelReader, is_repetition, label_scores, paired_f1_difference
from neurovfm.reportgen.triage import RuleJudge
from neurovfm.reportgen.run import curated_ids, training_pool
from neurovfm.reportgen.train import Trainer, collate

log = logging.getLogger("neurovfm")


class OracleTokens:
    """Positive control: each series' tokens (at most ``n_tokens``, evenly strided) plus a fixed code of its study's
    labels, ``amplitude`` x the sum of one random unit vector per positive label (per modality, fixed seed). A
    generator that uses the image must answer better from these than from another study's; if it does not even
    here, the image path itself is broken, not the encoder's features. ``study_noise`` s > 0 adds one random shift
    per study (norm about s, fixed by seed and study id) that hides the code in part: the labels are then read
    less well than perfectly from the pooled features (``reportgen_feature_signal.py`` measures how well)."""

    def __init__(
        self,
        base: StudyTokens,
        targets: dict,
        amplitude: float,
        n_tokens: int = 256,
        seed: int = 0,
        study_noise: float = 0.0,
    ):
        self.base, self.targets, self.amplitude, self.n_tokens = base, targets, amplitude, n_tokens
        self.study_noise, self.seed = float(study_noise), seed
        g = torch.Generator().manual_seed(seed)
        self.codes = {}
        for modality in sorted({m for m, _ in targets.values()}):
            n = len(next(v for m, v in targets.values() if m == modality))
            e = torch.randn(n, base.dim, generator=g)
            self.codes[modality] = e / e.norm(dim=1, keepdim=True)

    @property
    def dim(self) -> int:
        return self.base.dim

    def entries(self, study_id: str) -> list[int]:
        return self.base.entries(study_id)

    def has(self, study_id: str) -> bool:
        return self.base.has(study_id)

    def __call__(self, study_id: str) -> list[torch.Tensor]:
        series = self.base(study_id)
        if study_id not in self.targets:  # no label row: no code (the control then cannot help this study)
            return series
        modality, y = self.targets[study_id]
        code = self.amplitude * (torch.as_tensor(y, dtype=torch.float32) @ self.codes[modality])
        if self.study_noise > 0:  # a weaker control: one Gaussian shift per study, fixed by its id
            key = int.from_bytes(hashlib.sha256(f"{self.seed}/{study_id}".encode()).digest()[:8], "little")
            g = torch.Generator().manual_seed(key)
            code = code + self.study_noise * torch.randn(self.base.dim, generator=g) / self.base.dim**0.5
        out = []
        for t in series:
            keep = torch.linspace(0, len(t) - 1, min(self.n_tokens, len(t))).round().long()
            out.append(t[keep].float() + code)
        return out


def answer_losses(trainer: Trainer, studies: StudyTokens, sids: list[str], donors: list[str]) -> np.ndarray:
    """Mean stage-2 answer-token loss of each study with the series of ``donors[i]`` (the prompt holds one
    placeholder per donor series)."""
    trainer.model.eval()
    trainer.connector.eval()
    p, rg = trainer.rg["prompt"], trainer.rg
    out = []
    with torch.no_grad():
        for sid, donor in zip(sids, donors):
            ex = encode(
                trainer.tokenizer,
                p["system"],
                len(studies.entries(donor)),
                trainer.indications.get(sid),
                p["instruction"],
                stage2_target(findings_of(trainer, sid)),
                trainer.connector.n_latents,
                int(rg["max_seq_len"]),
            )
            ids, labels, mask = collate([ex], trainer.tokenizer.pad_token_id, trainer.device)
            out.append(float(trainer.plain_step(ids, mask, labels, [studies(donor)])))
    return np.asarray(out)


def findings_of(trainer: Trainer, sid: str) -> list[str]:
    return trainer.findings[sid]["findings"]


def grad_norms(trainer: Trainer, sids: list[str]) -> dict:
    """Gradient norms of the stage-2 loss of ``sids`` into the connector and into the LLM."""
    trainer.model.train()
    trainer.connector.train()
    for p in list(trainer.connector.parameters()) + list(trainer.model.parameters()):
        p.requires_grad_(True)
        p.grad = None
    examples = [trainer.example(s, 2) for s in sids]
    ids, labels, mask = collate(examples, trainer.tokenizer.pad_token_id, trainer.device)
    loss = trainer.plain_step(ids, mask, labels, [trainer.studies(s) for s in sids])
    loss.backward()

    def norm(params):
        return float(torch.sqrt(sum((p.grad.float() ** 2).sum() for p in params if p.grad is not None)))

    return {"grad_connector": norm(trainer.connector.parameters()), "grad_lm": norm(trainer.model.parameters())}


def decode(
    model_dir: Path, rg: dict, settings: dict, studies, sids, findings, indications=None, donors=None
) -> list[dict]:
    """Answers for ``sids``: with their indications when given (else none), from the series of ``donors`` when
    given (the shuffled-image control) else their own."""
    gen = Generator(model_dir, merged(rg, {"generation": settings}))
    rows = []
    for i, sid in enumerate(sids):
        image_of = donors[i] if donors is not None else sid
        text, sec = gen.generate(studies(image_of), indications.get(sid) if indications is not None else None)
        items, status, err = parse_findings(text)
        rows.append(
            {
                "study_id": sid,
                "modality": findings[sid]["modality"],
                "variant": "indication" if indications is not None else "no_indication",
                "image_of": image_of,
                "status": status,
                "findings": items,
                "raw": text,
                "seconds": sec,
            }
        )
    return rows


def triage_scores(judge, rows: list[dict], acuity: dict, indications) -> dict:
    """Rule-judge triage of the answers against the export's truth acuity: accuracy, balanced accuracy (mean recall
    of the three levels: the split is not balanced) and urgent sensitivity."""
    pred = [
        judge.triage(r["findings"], indications.get(r["study_id"]) if indications else None, r["modality"])
        for r in rows
    ]
    truth = [acuity[r["study_id"]] for r in rows]
    recalls = [
        np.mean([p == t for p, t in zip(pred, truth) if t == level])
        for level in ("urgent", "routine", "unremarkable")
        if level in truth
    ]
    urgent = [p == "urgent" for p, t in zip(pred, truth) if t == "urgent"]
    return {
        "triage_accuracy": float(np.mean([p == t for p, t in zip(pred, truth)])),
        "triage_balanced_accuracy": float(np.mean(recalls)),
        "urgent_sensitivity": float(np.mean(urgent)) if urgent else float("nan"),
        "n_urgent": len(urgent),
        "predicted_urgent": int(sum(p == "urgent" for p in pred)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--run-dir", type=Path, default=Path("results/demo"))
    ap.add_argument("--private-dir", type=Path, default=Path("private/demo"))
    ap.add_argument("--encoder", default="random")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--variant", nargs=2, action="append", metavar=("NAME", "JSON"), required=True)
    ap.add_argument(
        "--decode",
        nargs=2,
        action="append",
        metavar=("NAME", "JSON"),
        help="decoding settings (keys of reportgen.generation); default: the config's",
    )
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument(
        "--oracle",
        type=float,
        default=None,
        metavar="AMPLITUDE",
        help="positive control: add a fixed code of each study's labels to its tokens (OracleTokens)",
    )
    ap.add_argument("--oracle-noise", type=float, default=0.0, help="OracleTokens' study_noise")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    run = args.run_dir
    findings = load_findings(run / "labels/findings.jsonl")
    base_cfg = default_config()
    judge = RuleJudge.from_config(base_cfg["reportgen"]["triage"])
    key = resolve_key(base_cfg["deid"], base_cfg["run"])
    acuity = acuity_from_truth(load_truth(run / "pacs_export" / "truth", key))
    indications = load_indications(args.private_dir / "reports.jsonl")
    summary = []
    for name, override in args.variant:
        cfg = default_config(**json.loads(override))
        rg = cfg["reportgen"]
        train_st = StudyTokens(run / f"features/{args.encoder}/train/index.json", rg)
        eval_st = StudyTokens(run / f"features/{args.encoder}/{args.split}/index.json", rg)
        if args.oracle is not None:
            ids = [s for s in findings if train_st.has(s) or eval_st.has(s)]
            targets, _ = label_targets(run / "labels/ct.csv", run / "labels/mri.csv", ids)
            train_st, eval_st = (
                OracleTokens(st, targets, args.oracle, study_noise=args.oracle_noise) for st in (train_st, eval_st)
            )
        pool = training_pool(findings, train_st)
        curated = curated_ids(cfg, pool, run / "labels/ct.csv", run / "labels/mri.csv", args.size)
        work = args.work / name
        t0 = time.perf_counter()
        labels = (
            label_targets(run / "labels/ct.csv", run / "labels/mri.csv", sorted(set(curated) | set(pool)))
            if uses_label_loss(rg)
            else None
        )
        trainer = Trainer(cfg, train_st, findings, indications, curated, work, labels=labels)
        if not (work / "connector.pt").exists():
            trainer.run()
        train_s = time.perf_counter() - t0
        metrics = pd.read_csv(work / "metrics.csv")
        # reload the exported weights into the trainer's modules (a reused variant is scored the same way)
        gen = Generator(work, rg)
        trainer.model, trainer.connector, trainer.tokenizer = gen.model, gen.connector, gen.tokenizer
        trainer.plain_step.lm, trainer.plain_step.connector = gen.model, gen.connector
        sids = training_pool(findings, eval_st, args.split)
        if not any(r["variant"] == "prior-only" for r in summary):  # the frame: most frequent training findings
            prior = [r for r in prior_only(findings, pool, sids) if r["variant"] == "indication"]
            refs0 = {s: findings[s]["findings"] for s in sids}
            ps = label_scores(
                pd.DataFrame(prior).assign(model="prior-only"),
                refs0,
                {"all": set(sids)},
                {"n_boot": args.n_boot, "alpha": 0.05},
                0,
                LabelReader(),
            )
            ps = ps[ps.modality == "all"].set_index("label")
            summary.append(
                {
                    "variant": "prior-only",
                    "prompt": "indication",
                    "micro_f1": float(ps.loc["micro", "f1"]),
                    "macro_f1": float(ps.loc["macro", "f1"]),
                    **triage_scores(judge, prior, acuity, indications),
                }
            )
        trainer.studies = eval_st
        # donors of the same modality; a modality with one study is left out
        groups = [findings[s]["modality"] for s in sids]
        perm = derangement(groups, 0)
        donors = [sids[k] for k in perm]
        keep = [i for i in range(len(sids)) if perm[i] != i]
        own = answer_losses(trainer, eval_st, [sids[i] for i in keep], [sids[i] for i in keep])
        shuf = answer_losses(trainer, eval_st, [sids[i] for i in keep], [donors[i] for i in keep])
        diff = shuf - own
        reps = np.array([diff[i].mean() for i in bootstrap_indices(len(diff), args.n_boot, 0)])[:, None]
        lo, hi = percentile_ci(reps, 0.05)
        gn = grad_norms(trainer, [sids[i] for i in keep[:8]])
        row = {
            "variant": name,
            "override": override,
            "train_seconds": round(train_s, 1),
            "vocab": len(trainer.tokenizer),
            "stage1_steps": int((metrics.stage == 1).sum()),
            "stage2_steps": int((metrics.stage == 2).sum()),
            "final_loss_stage1": float(metrics[metrics.stage == 1].loss.tail(5).mean()),
            "final_loss_stage2": float(metrics[metrics.stage == 2].loss.tail(5).mean()),
            "val_loss_own": float(own.mean()),
            "val_loss_shuffled": float(shuf.mean()),
            "shuffle_gain": float(diff.mean()),
            "shuffle_gain_ci_lo": float(lo[0]),
            "shuffle_gain_ci_hi": float(hi[0]),
            "n_pairs": len(keep),
            **gn,
        }
        reader = LabelReader()
        refs = {s: findings[s]["findings"] for s in sids}
        shuffled_donors = [donors[i] if i in set(keep) else sids[i] for i in range(len(sids))]
        for dname, dset in args.decode or [("config", "{}")]:
            for prompt in ("no_indication", "indication"):
                t1 = time.perf_counter()
                given = indications if prompt == "indication" else None
                rows = decode(work, rg, json.loads(dset), eval_st, sids, findings, given)
                shuffled = decode(work, rg, json.loads(dset), eval_st, sids, findings, given, shuffled_donors)
                gens = pd.DataFrame(rows).assign(model=name)
                ev = {"n_boot": args.n_boot, "alpha": 0.05}
                summ = label_scores(gens, refs, {"all": set(sids)}, ev, 0, reader)
                summ = summ[summ.modality == "all"].set_index("label")
                diff = paired_f1_difference(rows, shuffled, refs, args.n_boot, 0, 0.05, reader)
                answers = [" ".join(r["findings"]) if r["status"] == "ok" else r["raw"] for r in rows]
                tri = triage_scores(judge, rows, acuity, given)
                out = {
                    **row,
                    "decode": dname,
                    "decode_settings": dset,
                    "prompt": prompt,
                    "n_answers": len(rows),
                    "repetition_rate": float(np.mean([is_repetition(r) for r in rows])),
                    "distinct_answers": len(set(answers)),
                    "malformed": int(sum(r["status"] != "ok" for r in rows)),
                    "empty": int(sum(r["status"] == "ok" and not r["findings"] for r in rows)),
                    "micro_f1": float(summ.loc["micro", "f1"]),
                    "micro_f1_ci": f"{summ.loc['micro', 'ci_lo']:.3f}-{summ.loc['micro', 'ci_hi']:.3f}",
                    "macro_f1": float(summ.loc["macro", "f1"]),
                    "micro_f1_minus_shuffled": diff["micro"][0],
                    "micro_f1_minus_shuffled_ci": f"{diff['micro'][1]:.3f}-{diff['micro'][2]:.3f}",
                    **tri,
                    "decode_seconds": round(time.perf_counter() - t1, 1),
                    "example": answers[0][:160],
                }
                summary.append(out)
                log.info("%s", json.dumps(out))
                with open(args.out / f"{name}__{dname}__{prompt}.jsonl", "w") as fh:
                    for r in rows + [{**r, "control": "shuffled"} for r in shuffled]:
                        fh.write(json.dumps(r) + "\n")
        pd.DataFrame(summary).to_csv(args.out / "summary.csv", index=False)


if __name__ == "__main__":
    main()
