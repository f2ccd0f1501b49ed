"""Workflow steps of report generation (called from ``neurovfm.pipeline``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from neurovfm.utils.atomic import atomic_open, write_csv
from neurovfm.utils.progress import Progress

from .curation import draw, label_table, rarest_label_weights
from .data import StudyTokens, load_findings, load_indications, studies_with_series
from .balanced import acuity_from_labels, acuity_from_truth, balanced_set
from .cost import cost_table
from .evaluate import pathology_strata, text_metrics, triage_scores
from .generate import Generator, parse_findings
from .label_head import label_targets, uses_label_loss
from .naming import main_model
from .train import Trainer, seed_of

log = logging.getLogger("neurovfm")
VARIANTS = ("indication", "no_indication")


def training_pool(findings: dict, studies: StudyTokens, split: str = "train") -> list[str]:
    """Reported studies of ``split`` with findings and at least one series of features."""
    return sorted(s for s, r in findings.items() if r.get("split") == split and studies.has(s))


def curated_ids(cfg: dict, pool: list[str], ct_csv, mri_csv, size: int) -> list[str]:
    rg = cfg["reportgen"]
    weights = None
    if rg["curation"] == "rarest_label":
        labels, modality = label_table(ct_csv, mri_csv, pool)
        weights = rarest_label_weights(labels, modality)
    return draw(pool, weights, size, seed_of(cfg))


def train(
    cfg: dict, size: int, train_index, findings_jsonl, ct_csv, mri_csv, reports_jsonl, out_dir, text_stage=None
) -> None:
    """Stages 1 and 2 (and the demo LM's stage 0, taken from ``text_stage`` when that file was trained for exactly
    this run: :mod:`.text_stage`) on ``size`` curated pairs."""
    rg = cfg["reportgen"]
    findings = load_findings(findings_jsonl)
    studies = StudyTokens(train_index, rg)
    pool = training_pool(findings, studies)
    curated = curated_ids(cfg, pool, ct_csv, mri_csv, int(size))
    log.info(
        "report generation: %d curated pairs drawn from %d training studies (%d unique)",
        len(curated),
        len(pool),
        len(set(curated)),
    )
    import torch

    from neurovfm.jepa.train import init_distributed

    d = init_distributed()  # joins the process group under torchrun (WORLD_SIZE > 1)
    try:
        # label rows of every study a stage may train on (stage1.studies all: the whole pool)
        labels = label_targets(ct_csv, mri_csv, sorted(set(curated) | set(pool))) if uses_label_loss(rg) else None
        Trainer(
            cfg,
            studies,
            findings,
            load_indications(reports_jsonl),
            curated,
            Path(out_dir),
            dist=d,
            labels=labels,
            text_stage=text_stage,
        ).run()
    finally:
        if d.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def generate(cfg: dict, model_dir, index, findings_jsonl, reports_jsonl, out_jsonl) -> dict:
    """Findings for every reported study of the generation split, with and without the indication."""
    rg = cfg["reportgen"]
    findings = load_findings(findings_jsonl)
    studies = StudyTokens(index, rg)
    indications = load_indications(reports_jsonl)
    sids = training_pool(findings, studies, rg["generation"]["split"])
    gen = Generator(model_dir, rg)
    progress = Progress(
        len(sids) * len(VARIANTS), "findings generation", log, every_s=float(rg["progress_every_s"]), unit="answers"
    )
    counts = {"ok": 0, "malformed": 0}
    with atomic_open(out_jsonl, "w") as fh:
        for sid in sids:
            series = studies(sid)
            for variant in VARIANTS:
                text, seconds = gen.generate(series, indications.get(sid) if variant == "indication" else None)
                items, status, error = parse_findings(text)
                counts[status] += 1
                fh.write(
                    json.dumps(
                        {
                            "study_id": sid,
                            "modality": findings[sid]["modality"],
                            "variant": variant,
                            "n_series": len(series),
                            "status": status,
                            "error": error,
                            "findings": items,
                            "raw": text,
                            "seconds": round(seconds, 4),
                        }
                    )
                    + "\n"
                )
                progress.update()
    progress.close()
    log.info("generated %d answers (%d malformed)", sum(counts.values()), counts["malformed"])
    return counts


# -- baselines ----------------------------------------------------------------------------------------
BASELINES = ("prior_only", "retrieval", "shuffled_image")


def baseline_names(encoder: str, size) -> dict[str, str]:
    """Model names of the baselines of the main model (no ``/n``: the figures list them beside it)."""
    return {
        "prior_only": "prior-only",
        "retrieval": f"retrieval ({encoder})",
        "shuffled_image": f"shuffled-image ({encoder}, n{size})",
    }


def baselines(
    cfg: dict, model_dir, train_index, index, findings_jsonl, reports_jsonl, out_prior, out_retrieval, out_shuffled
) -> None:
    """Prior-only, retrieval and shuffled-image answers for every reported study of the generation split
    (:mod:`.baselines`), in the format of ``generations.jsonl``."""
    from . import baselines as bl

    rg = cfg["reportgen"]
    findings = load_findings(findings_jsonl)
    train_st, query_st = StudyTokens(train_index, rg), StudyTokens(index, rg)
    pool = training_pool(findings, train_st)
    sids = training_pool(findings, query_st, rg["generation"]["split"])
    indications = load_indications(reports_jsonl)
    rows = {
        out_prior: bl.prior_only(findings, pool, sids),
        out_retrieval: bl.retrieval(findings, train_st, pool, query_st, sids),
        out_shuffled: bl.shuffled_image(Generator(model_dir, rg), query_st, findings, indications, sids, seed_of(cfg)),
    }
    for path, recs in rows.items():
        with atomic_open(path, "w") as fh:
            for r in recs:
                fh.write(json.dumps(r) + "\n")
    log.info(
        "baselines: %d studies (prior-only, retrieval over %d training studies, shuffled images)", len(sids), len(pool)
    )


# -- triage set -------------------------------------------------------------------------------------
def acuity_table(cfg: dict, findings: dict, ct_csv, mri_csv, truth: dict | None) -> pd.DataFrame:
    """study_id, modality, split, acuity of every reported study, from the configured source."""
    source = cfg["reportgen"]["triage"]["acuity_source"]
    if source == "auto":
        source = "truth" if truth is not None else "labels"
    if source == "truth":
        if truth is None:
            raise ValueError("reportgen.triage.acuity_source is 'truth' but this run has no synthetic truth files")
        acuity = acuity_from_truth(truth)
    else:
        acuity = acuity_from_labels(ct_csv, mri_csv)
    rows = [
        {"study_id": s, "modality": r["modality"], "split": r.get("split"), "acuity": acuity[s]}
        for s, r in sorted(findings.items())
        if s in acuity
    ]
    log.info("acuity of %d reported studies from %s", len(rows), source)
    return pd.DataFrame(rows, columns=["study_id", "modality", "split", "acuity"])


def triage_set(cfg: dict, findings_jsonl, ct_csv, mri_csv, index, truth: dict | None, out_set, out_acuity) -> None:
    """The balanced triage set, drawn from the reported studies of the generation split that have a series in
    ``index``: the split's preprocessed shards (the workflow: the same set for every encoder, known before any
    encoder ran) or a feature index."""
    rg = cfg["reportgen"]
    findings = load_findings(findings_jsonl)
    acuity = acuity_table(cfg, findings, ct_csv, mri_csv, truth)
    studies = studies_with_series(index, rg)
    pool = set(training_pool(findings, studies, rg["generation"]["split"]))
    chosen = balanced_set(acuity[acuity.study_id.isin(pool)], rg["triage"]["per_cell"], seed_of(cfg))
    log.info("balanced triage set: %d studies (%d per modality and acuity)", len(chosen), len(chosen) // 6)
    write_csv(out_acuity, acuity)
    write_csv(out_set, chosen)


# -- frontier inputs ------------------------------------------------------------------------------
def frontier_inputs(
    cfg: dict, triage_set_csv, series_csv, shard_index, reports_jsonl, payload_dir, out_counts, out_generations
) -> pd.DataFrame:
    """Payloads of every frontier model for the triage set (under ``payload_dir``, private); sends them and
    records the answers only for models with an endpoint."""
    from neurovfm.labels.llm import map_reports
    from neurovfm.store.reader import ShardReader

    from .frontier_inputs import build_study, payload, send_payload, write_payload
    from .triage import endpoint_client

    rg = cfg["reportgen"]
    fr = rg["frontier"]
    chosen = pd.read_csv(triage_set_csv, dtype={"study_id": str})
    series = pd.read_csv(series_csv, dtype={"study_id": str, "series_id": str})
    reader = ShardReader(shard_index)
    indications = load_indications(reports_jsonl)
    rows, answers = [], []
    progress = Progress(
        len(chosen) * len(fr["models"]),
        "frontier payloads",
        log,
        every_s=float(rg["progress_every_s"]),
        unit="payloads",
    )
    images = {sid: {} for sid in chosen.study_id}  # per study: each (series, channel) encoded once for all models
    for name, spec in fr["models"].items():
        bodies = {}
        for sid in chosen.study_id:
            srows = series[series.study_id == sid].to_dict("records")
            parts, counts = build_study(reader, srows, fr, int(spec["max_series"]), images[sid])
            body = payload(spec["model"], fr["prompt"].format(indication=indications.get(sid) or "not given"), parts)
            write_payload(Path(payload_dir) / name / f"{sid}.json", body)
            bodies[sid] = body
            rows.extend({"model": name, "study_id": sid, **c} for c in counts)
            progress.update()
        if spec.get("endpoint") and spec.get("model"):
            client = endpoint_client(spec, None)
            results = map_reports(lambda sid: send_payload(client, bodies[sid]), list(bodies), spec["max_workers"])
            for sid, (res, err) in zip(bodies, results):
                items, status, error, _raw = res if res else ([], "failed", err, "")
                answers.append(
                    {
                        "study_id": sid,
                        "model": name,
                        "variant": "indication",
                        "status": status,
                        "error": error,
                        "findings": items,
                        "raw": " ".join(items),
                    }
                )
    progress.close()
    counts = pd.DataFrame(
        rows, columns=["model", "study_id", "series_id", "sequence", "channel", "n_slices", "kept", "dropped_black"]
    )
    write_csv(out_counts, counts)
    with atomic_open(out_generations, "w") as fh:
        for a in answers:
            fh.write(json.dumps(a) + "\n")
    return counts


# -- triage -------------------------------------------------------------------------------------------
def read_generations(paths: dict[str, str]) -> pd.DataFrame:
    """{model: generations.jsonl} -> one frame (model, variant, study_id, status, findings, raw, seconds)."""
    rows = []
    for model, path in paths.items():
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    rows.append({"model": model, **json.loads(line)})
    cols = ["model", "variant", "study_id", "status", "findings", "raw", "seconds"]
    return pd.DataFrame(rows, columns=list(dict.fromkeys(cols + (list(rows[0]) if rows else []))))


def _judge_items(row: dict) -> list[str]:
    """What the judge reads of an answer: its findings; a malformed answer's raw text as one finding."""
    if row["status"] == "ok":
        return list(row["findings"])
    raw = (row.get("raw") or "").strip()
    return [raw] if raw else []


def triage(
    cfg: dict,
    generations: dict[str, str],
    frontier_jsonl,
    findings_jsonl,
    reports_jsonl,
    triage_set_csv,
    acuity_csv,
    cache_dir,
    out_predictions,
    out_validation,
) -> pd.DataFrame:
    """Every judge triages the reference findings (validation) and every model's answers on the triage set."""
    from neurovfm.labels.llm import map_reports

    from .triage import judges_from_config

    rg = cfg["reportgen"]
    findings = load_findings(findings_jsonl)
    indications = load_indications(reports_jsonl)
    chosen = pd.read_csv(triage_set_csv, dtype={"study_id": str})
    acuity = pd.read_csv(acuity_csv, dtype={"study_id": str}).set_index("study_id")["acuity"].to_dict()
    # frontier answers carry their own model name, which overrides the key
    gens = read_generations({**generations, **({"frontier": frontier_jsonl} if frontier_jsonl else {})})
    jobs = []  # (model, variant, study_id, items, indication)
    set_ids = set(chosen.study_id)
    for sid in sorted(acuity):  # reference findings of every reported study: judge validation
        for variant in VARIANTS:
            jobs.append(
                (
                    "reference",
                    variant,
                    sid,
                    findings[sid]["findings"],
                    indications.get(sid) if variant == "indication" else None,
                )
            )
    for row in gens[gens.study_id.isin(set_ids)].to_dict("records"):
        jobs.append(
            (
                row["model"],
                row["variant"],
                row["study_id"],
                _judge_items(row),
                indications.get(row["study_id"]) if row["variant"] == "indication" else None,
            )
        )
    frames = []
    for judge in judges_from_config(rg, cache_dir):
        todo = jobs if judge.name == "rules" else [j for j in jobs if j[0] != "reference" or j[2] in set_ids]
        workers = (
            1
            if judge.name == "rules"
            else next(int(s["max_workers"]) for s in rg["triage"]["judges"] if s["name"] == judge.name)
        )
        results = map_reports(lambda j: judge.triage(j[3], j[4], findings[j[2]]["modality"]), todo, workers)
        frames.append(
            pd.DataFrame(
                [
                    {
                        "model": j[0],
                        "variant": j[1],
                        "judge": judge.name,
                        "study_id": j[2],
                        "modality": findings[j[2]]["modality"],
                        "acuity": acuity[j[2]],
                        "predicted": res,
                        "error": err,
                    }
                    for j, (res, err) in zip(todo, results)
                ]
            )
        )
        log.info(
            "judge %s: %d triage decisions (%d errors)", judge.name, len(todo), sum(e is not None for _, e in results)
        )
    pred = pd.concat(frames, ignore_index=True)
    validation = validate_judges(pred, set_ids, float(rg["triage"]["judge_min_accuracy"]))
    write_csv(out_validation, validation)
    write_csv(out_predictions, pred[pred.study_id.isin(set_ids)])
    return validation


def validate_judges(pred: pd.DataFrame, set_ids: set, min_accuracy: float) -> pd.DataFrame:
    """Accuracy of each judge on the reference findings (all reported studies and the triage set)."""
    rows = []
    ref = pred[pred.model == "reference"]
    for (judge, variant), g in ref.groupby(["judge", "variant"], sort=True):
        for subset, sub in (("all_reported", g), ("triage_set", g[g.study_id.isin(set_ids)])):
            if sub.empty:
                continue
            acc = float((sub.predicted == sub.acuity).mean())
            rows.append(
                {
                    "judge": judge,
                    "variant": variant,
                    "subset": subset,
                    "n": len(sub),
                    "accuracy": acc,
                    "min_accuracy": min_accuracy,
                    "passes": acc > min_accuracy,
                }
            )
            log.info(
                "judge %s on reference findings (%s, %s): accuracy %.3f over %d", judge, variant, subset, acc, len(sub)
            )
    return pd.DataFrame(rows)


# -- evaluation tables ----------------------------------------------------------------------------------
def evaluate(
    cfg: dict,
    generations: dict[str, str],
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
    rg = cfg["reportgen"]
    ev, seed = rg["eval"], int(rg["eval"]["seed"] if rg["eval"]["seed"] is not None else cfg["seed"])
    findings = load_findings(findings_jsonl)
    refs = {s: r["findings"] for s, r in findings.items()}
    chosen = pd.read_csv(triage_set_csv, dtype={"study_id": str})
    set_ids = set(chosen.study_id)
    gens = read_generations({**generations, **({"frontier": frontier_jsonl} if frontier_jsonl else {})})
    text = text_metrics(
        gens, refs, rg["prompt"]["normal_text"], {"triage_set": set_ids, "all": set(gens.study_id)}, ev, seed
    )
    write_csv(out_text, text)

    pred = pd.read_csv(predictions_csv, dtype={"study_id": str})
    tables = {
        "CT": pd.read_csv(ct_csv, dtype={"study_id": str}).set_index("study_id"),
        "MR": pd.read_csv(mri_csv, dtype={"study_id": str}).set_index("study_id"),
    }
    strata = {
        "all": set_ids,
        **{m: set(chosen.study_id[chosen.modality == m]) for m in ("CT", "MR")},
        **pathology_strata(chosen, tables, rg["triage"]["pathologies"]),
    }
    scores = triage_scores(pred, strata, ev, seed)
    write_csv(out_triage, scores)

    main = main_model(cfg)
    sec = gens[(gens.model == main) & (gens.variant == "indication")]["seconds"].astype(float)
    write_csv(out_cost, cost_table(rg["cost"], {f"NeuroVFM-LLaVA ({main}, this machine)": float(sec.mean())}))

    rows = []
    encoder = main.split("/")[0]
    for size in sorted(int(s) for s in rg["sizes"]):
        model = f"{encoder}/n{size}"
        met = text[
            (text.model == model)
            & (text.variant == "indication")
            & (text.subset == "triage_set")
            & (text.metric == "METEOR")
        ]
        acc = scores[
            (scores.model == model)
            & (scores.variant == "indication")
            & (scores.judge == "rules")
            & (scores.stratum == "all")
        ]
        if met.empty or acc.empty:
            continue
        rows.append(
            {
                "model": model,
                "size": size,
                "meteor": float(met["mean"].iloc[0]),
                "meteor_ci_lo": float(met["ci_lo"].iloc[0]),
                "meteor_ci_hi": float(met["ci_hi"].iloc[0]),
                "triage_accuracy": float(acc["accuracy"].iloc[0]),
                "accuracy_ci_lo": float(acc["ci_lo"].iloc[0]),
                "accuracy_ci_hi": float(acc["ci_hi"].iloc[0]),
                "n": int(acc["n"].iloc[0]),
            }
        )
    write_csv(out_scaling, pd.DataFrame(rows))
    if out_labels is not None:
        from .quality import LabelReader, label_scores

        reader = LabelReader()
        labels = label_scores(gens, refs, {"triage_set": set_ids, "all": set(gens.study_id)}, ev, seed, reader)
        write_csv(out_labels, labels)
        if out_differences is not None:
            write_csv(out_differences, differences(cfg, gens, pred, refs, set_ids, ev, seed, reader))
    log.info("report generation evaluation written (%d text rows, %d triage rows)", len(text), len(scores))


def differences(
    cfg: dict, gens: pd.DataFrame, pred: pd.DataFrame, refs: dict, set_ids: set, ev: dict, seed: int, reader
):
    """The main model minus each baseline, paired by study with bootstrap intervals: triage accuracy and urgent
    sensitivity (rules judge, triage set), label-level micro / macro F1 (triage set and all generated studies)."""
    from .quality import paired_f1_difference, paired_mean_difference

    main = main_model(cfg)
    encoder, size = main.split("/n")
    n_boot, alpha = int(ev["n_boot"]), float(ev["alpha"])
    rows = []
    for base in baseline_names(encoder, size).values():
        if base not in set(gens.model):
            continue
        for variant in VARIANTS:
            common = {"model": main, "baseline": base, "variant": variant}
            p = pred[(pred.judge == "rules") & (pred.variant == variant) & pred.study_id.isin(set_ids)]
            a = p[p.model == main].set_index("study_id")
            b = p[p.model == base].set_index("study_id")
            ids = sorted(set(a.index) & set(b.index))
            if ids:
                ca = (a.loc[ids, "predicted"] == a.loc[ids, "acuity"]).to_numpy(float)
                cb = (b.loc[ids, "predicted"] == b.loc[ids, "acuity"]).to_numpy(float)
                d = paired_mean_difference(ca, cb, n_boot, seed, alpha)
                rows.append({**common, "subset": "triage_set", "metric": "triage_accuracy", "n": len(ids), **_diff(d)})
                urg = [i for i in ids if a.loc[i, "acuity"] == "urgent"]
                ua = (a.loc[urg, "predicted"] == "urgent").to_numpy(float)
                ub = (b.loc[urg, "predicted"] == "urgent").to_numpy(float)
                d = paired_mean_difference(ua, ub, n_boot, seed, alpha)
                rows.append(
                    {**common, "subset": "triage_set", "metric": "urgent_sensitivity", "n": len(urg), **_diff(d)}
                )
            for subset, keep in (("triage_set", set_ids), ("all", None)):
                g = gens[gens.variant == variant]
                ga = g[g.model == main]
                gb = g[g.model == base]
                ids = set(ga.study_id) & set(gb.study_id) & (keep if keep is not None else set(ga.study_id))
                if not ids:
                    continue
                res = paired_f1_difference(
                    ga[ga.study_id.isin(ids)].to_dict("records"),
                    gb[gb.study_id.isin(ids)].to_dict("records"),
                    refs,
                    n_boot,
                    seed,
                    alpha,
                    reader,
                )
                for name in ("micro", "macro"):
                    rows.append(
                        {**common, "subset": subset, "metric": f"label_{name}_f1", "n": res["n"], **_diff(res[name])}
                    )
    return pd.DataFrame(
        rows, columns=["model", "baseline", "variant", "subset", "metric", "n", "difference", "ci_lo", "ci_hi"]
    )


def _diff(d: tuple[float, float, float]) -> dict:
    return {"difference": d[0], "ci_lo": d[1], "ci_hi": d[2]}
