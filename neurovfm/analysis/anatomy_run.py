"""The anatomy analysis of one run (config ``analysis.anatomy``): token regions of chosen volumes of one split, then
t-SNE of one encoder's token features (Fig. 3a), cross-volume patch matching per encoder (Fig. 3b) and dense k-means
brain clusters per encoder (Extended Data Fig. 13e). Volumes are chosen with the run seed, distinct patients first.

Table rows (``anatomy.csv``): ``analysis`` (matching | kmeans), ``encoder``, ``metric``, ``group``, ``value``,
``lo``, ``hi`` (95% percentile bootstrap over pairs / volumes), ``n``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from neurovfm.analysis import anatomy_regions as ar
from neurovfm.analysis.kmeans_brain import best_cluster, dense_clusters
from neurovfm.analysis.patch_matching import match_pair, plan_pairs
from neurovfm.eval.bootstrap import bootstrap_indices, percentile_ci

log = logging.getLogger("neurovfm")
TABLE_COLUMNS = ["analysis", "encoder", "metric", "group", "value", "lo", "hi", "n"]


def _spread(meta: list[dict], candidates: list[int], n: int, seed: int) -> list[int]:
    """Up to ``n`` of ``candidates``: round robin over acquisitions (modality, sequence, orientation), one volume
    per patient, in a seeded order."""
    rng = np.random.default_rng(seed)
    order = [candidates[k] for k in rng.permutation(len(candidates))]
    groups: dict[tuple, list[int]] = {}
    for i in order:
        groups.setdefault((meta[i]["modality"], meta[i]["sequence"], meta[i]["orientation"]), []).append(i)
    chosen, patients = [], set()
    queues = [groups[k] for k in sorted(groups)]
    while len(chosen) < n and any(queues):
        for q in queues:
            while q and meta[q[0]]["patient_id"] in patients:
                q.pop(0)
            if q and len(chosen) < n:
                i = q.pop(0)
                chosen.append(i)
                patients.add(meta[i]["patient_id"])
    return chosen


def select_volumes(meta: list[dict], acfg: dict, seed: int) -> dict[str, list[int]]:
    """Positions (in ``meta``) of the t-SNE, matching and k-means volumes."""
    mr_t1 = [i for i, m in enumerate(meta) if m["modality"] == "MR" and m["sequence"] in ("t1", "t1c")]
    match = [i for i, m in enumerate(meta) if m["modality"] in acfg["matching"]["modalities"]]
    km = []
    for o in ("axial", "coronal", "sagittal"):
        cand = [i for i, m in enumerate(meta) if m["modality"] == "MR" and m["orientation"] == o]
        km += _spread(meta, cand, int(acfg["kmeans"]["per_orientation"]), seed)
    return {
        "tsne": _spread(meta, mr_t1, int(acfg["tsne"]["n_volumes"]), seed),
        "matching": _spread(meta, match, int(acfg["matching"]["n_volumes"]), seed),
        "kmeans": km,
    }


class VolumeAnatomy:
    """Reference maps of the chosen volumes: region codes per token and the brain mask per voxel, from the rebuilt
    synthetic patients (tens of seconds: the workflow builds them in a job of their own, ``anatomy_reference``,
    before the encoders are done, and :meth:`save` / :meth:`load` carry them to the analysis)."""

    def __init__(self, cfg: dict, shard_reader, positions, truth: dict[str, dict]):
        from neurovfm.analysis.synth_patients import rebuild_patients
        from neurovfm.synth.anatomy import load_anatomy

        acfg = cfg["analysis"]["anatomy"]
        self.reader, self.spacing = shard_reader, shard_reader.index["spacing_mm"]
        self.patch = tuple(shard_reader.index["patch"])
        vols = shard_reader.volumes
        uid_of = {sid: truth[sid]["study_instance_uid"] for sid in {vols[i]["study_id"] for i in positions}}
        by_uid = {rec["study_instance_uid"]: rec for rec in truth.values()}
        patients = rebuild_patients(cfg, set(uid_of.values()), by_uid)
        anat = load_anatomy()
        self.tokens, self.brain = {}, {}
        for i in positions:
            e = vols[i]
            p = patients[uid_of[e["study_id"]]]
            aff = ar.volume_to_template(e, self.spacing, p.native_to_lps, anat)
            lab = ar.sample(ar.region_map(anat, p.frac, acfg["parenchyma_fraction"]), aff, e["shape"])
            self.tokens[i] = ar.token_majority(lab, self.patch)
            mask = ar.tissue_mask(p.frac, acfg["brain_mask_tissues"], acfg["brain_mask_fraction"])
            self.brain[i] = ar.sample(mask.astype(np.uint8), aff, e["shape"]).astype(bool)

    def save(self, path) -> None:
        """The maps by series id (no position, no PHI), compressed, written atomically."""
        from neurovfm.utils.atomic import atomic_path

        arrays = {"patch": np.asarray(self.patch, np.int64)}
        for i in self.tokens:
            sid = self.reader.volumes[i]["series_id"]
            arrays[f"tokens/{sid}"], arrays[f"brain/{sid}"] = self.tokens[i], self.brain[i]
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    @classmethod
    def load(cls, path, shard_reader, positions) -> "VolumeAnatomy | None":
        """The maps :meth:`save` wrote, for the volumes at ``positions``; None when the file lacks one of them or
        was made with another patch size (the caller then builds them)."""
        va = cls.__new__(cls)
        va.reader, va.spacing = shard_reader, shard_reader.index["spacing_mm"]
        va.patch = tuple(shard_reader.index["patch"])
        va.tokens, va.brain = {}, {}
        with np.load(path) as z:
            if tuple(int(p) for p in z["patch"]) != va.patch:
                return None
            for i in positions:
                sid = shard_reader.volumes[i]["series_id"]
                if f"tokens/{sid}" not in z.files:
                    return None
                va.tokens[i], va.brain[i] = z[f"tokens/{sid}"], z[f"brain/{sid}"]
        return va


def anatomy_selection(cfg: dict, meta: list[dict], truth: dict) -> dict[str, list[int]]:
    """Positions (in the split's volumes ``meta``) of the t-SNE, matching and k-means volumes, among the volumes
    whose study has a ground-truth record."""
    acfg, an = cfg["analysis"]["anatomy"], cfg["analysis"]
    seed = int(cfg["seed"] if an["seed"] is None else an["seed"])
    known = [i for i, m in enumerate(meta) if m["study_id"] in truth]
    sel = select_volumes([meta[i] for i in known], acfg, seed)
    return {k: [known[j] for j in v] for k, v in sel.items()}


def build_reference(cfg: dict, shard_index, truth_dir, out_path) -> int:
    """The reference maps of the volumes :func:`run_anatomy` chooses (:class:`VolumeAnatomy`), saved to
    ``out_path``; returns their number."""
    from neurovfm.store.reader import ShardReader

    reader = ShardReader(shard_index)
    truth = truth_by_study(cfg, truth_dir)
    sel = anatomy_selection(cfg, reader.volumes, truth)
    positions = sorted(set().union(*sel.values()))
    VolumeAnatomy(cfg, reader, positions, truth).save(out_path)
    log.info("anatomy reference: %d volumes", len(positions))
    return len(positions)


def _token_features(freader, series_id: str):
    """(features [n, D] float32, coords [n, 3]) of a volume's stored entry (CT: the brain window)."""
    for k, e in enumerate(freader.entries):
        if e["series_id"] == series_id and e["window"] in ("mri", "brain"):
            return np.asarray(freader.features(k), np.float32), np.asarray(freader.coords(k), int)
    raise KeyError(f"series {series_id} has no stored features")


def _ci_rows(values, analysis, encoder, metric, group, n_boot, seed, alpha):
    v = np.asarray(values, float)
    reps = np.array([v[idx].mean() for idx in bootstrap_indices(len(v), n_boot, seed)])
    lo, hi = percentile_ci(reps[:, None], alpha)
    return {
        "analysis": analysis,
        "encoder": encoder,
        "metric": metric,
        "group": group,
        "value": float(v.mean()),
        "lo": float(lo[0]),
        "hi": float(hi[0]),
        "n": len(v),
    }


def run_anatomy(
    cfg: dict,
    encoders: dict,
    shard_index,
    stats_json,
    feature_indices: dict,
    truth_dir,
    device: str = "cpu",
    reference=None,
) -> dict:
    """``encoders``: name -> encoder.pt (None for random); ``feature_indices``: name -> the split's feature
    index; ``reference``: the file of :func:`build_reference` (its maps are used when it holds every chosen volume,
    else they are built here). Returns ``{"table", "tsne", "matching", "kmeans"}`` DataFrames (the latter three
    for the figures)."""
    import torch

    from neurovfm.features.encoders import load_frozen
    from neurovfm.features.extract import encode_pack
    from neurovfm.features.store import FeatureReader
    from neurovfm.preprocess.foreground import mr_foreground
    from neurovfm.store.dataset import VolumeDataset
    from neurovfm.store.stats import load_stats

    acfg, an = cfg["analysis"]["anatomy"], cfg["analysis"]
    seed = int(cfg["seed"] if an["seed"] is None else an["seed"])
    n_boot, alpha = int(an["n_boot"]), float(an["alpha"])
    truth = truth_by_study(cfg, truth_dir)
    dataset = VolumeDataset(shard_index, load_stats(stats_json))
    meta = [v for v in dataset.volumes]
    sel = anatomy_selection(cfg, meta, truth)
    log.info("anatomy: %s volumes (t-SNE, matching, k-means)", {k: len(v) for k, v in sel.items()})
    positions = sorted(set().union(*sel.values()))
    va = VolumeAnatomy.load(reference, dataset.reader, positions) if reference is not None else None
    if va is None:
        if reference is not None:
            log.warning("the anatomy reference lacks volumes of this selection: building the maps here")
        va = VolumeAnatomy(cfg, dataset.reader, positions, truth)
    rows, tsne_rows, match_rows, km_rows = [], [], [], []
    names = list(encoders)
    for enc in names:
        fr = FeatureReader(feature_indices[enc])
        feats = {i: _token_features(fr, meta[i]["series_id"]) for i in set(sel["tsne"]) | set(sel["matching"])}
        regions = {i: va.tokens[i][tuple(feats[i][1].T)] for i in feats}
        # t-SNE (first encoder only: the figure shows one representation)
        if enc == names[0]:
            tsne_rows = _tsne(feats, regions, sel["tsne"], acfg["tsne"], seed)
        # patch matching
        per_pair = []
        for a, b in plan_pairs([meta[i] for i in sel["matching"]], int(acfg["matching"]["n_pairs"]), seed):
            ia, ib = sel["matching"][a], sel["matching"][b]
            m = match_pair(feats[ia][0], regions[ia], feats[ib][0], regions[ib], len(ar.REGIONS))
            nq = int(m["queries"].sum())
            if nq == 0:
                continue
            per_pair.append(
                {
                    "encoder": enc,
                    "a": meta[ia]["series_id"],
                    "b": meta[ib]["series_id"],
                    "acq_a": f"{meta[ia]['modality']} {meta[ia]['sequence']} {meta[ia]['orientation']}",
                    "acq_b": f"{meta[ib]['modality']} {meta[ib]['sequence']} {meta[ib]['orientation']}",
                    "queries": nq,
                    "accuracy": m["matches"].sum() / nq,
                    "chance": m["chance"] / nq,
                    **{
                        f"acc:{ar.REGIONS[r]}": (m["matches"][r] / m["queries"][r] if m["queries"][r] else np.nan)
                        for r in range(1, len(ar.REGIONS))
                    },
                }
            )
        pp = pd.DataFrame(per_pair)
        match_rows.append(pp)
        for metric in ("accuracy", "chance"):
            rows.append(_ci_rows(pp[metric], "matching", enc, metric, "all", n_boot, seed, alpha))
        for r in ar.REGIONS[1:]:
            v = pp[f"acc:{r}"].dropna()
            if len(v):
                rows.append(_ci_rows(v, "matching", enc, "accuracy", r, n_boot, seed, alpha))
        fr.close()
        # dense k-means
        encoder, _ = load_frozen(enc, cfg, encoders[enc], seed=cfg["features"]["seed"], device=device)

        def encode(patches, coords):
            item = {"patches": torch.from_numpy(patches), "coords": torch.from_numpy(coords)}
            return encode_pack(encoder, [item], torch.device(device))[0].numpy()

        for i in sel["kmeans"]:
            image = dataset[i]["image"][0].numpy()
            fg = mr_foreground(np.asarray(dataset.reader.channel(i, "mri")))
            cmap = dense_clusters(
                encode,
                image,
                fg,
                va.patch,
                acfg["kmeans"]["stride_vox"],
                int(acfg["kmeans"]["k"]),
                float(cfg["preprocess"]["token_foreground_fraction"]),
                int(acfg["kmeans"]["n_init"]),
                seed,
            )
            best, ious = best_cluster(cmap, va.brain[i], int(acfg["kmeans"]["k"]))
            km_rows.append(
                {
                    "encoder": enc,
                    "series_id": meta[i]["series_id"],
                    "orientation": meta[i]["orientation"],
                    "sequence": meta[i]["sequence"],
                    "best_cluster": best,
                    "iou": ious[best],
                    "cluster_map": cmap,
                    "brain": va.brain[i],
                }
            )
        kd = pd.DataFrame(
            [{k: v for k, v in r.items() if k not in ("cluster_map", "brain")} for r in km_rows if r["encoder"] == enc]
        )
        rows.append(_ci_rows(kd["iou"], "kmeans", enc, "iou", "all", n_boot, seed, alpha))
        for o, g in kd.groupby("orientation"):
            rows.append(_ci_rows(g["iou"], "kmeans", enc, "iou", o, n_boot, seed, alpha))
    dataset.reader.close()
    return {
        "table": pd.DataFrame(rows, columns=TABLE_COLUMNS),
        "tsne": tsne_rows,
        "matching": pd.concat(match_rows, ignore_index=True),
        "kmeans": km_rows,
    }


def truth_by_study(cfg: dict, truth_dir) -> dict:
    from neurovfm.analysis.synth_patients import truth_by_study_id
    from neurovfm.ingest.deid import resolve_key

    return truth_by_study_id(Path(truth_dir), resolve_key(cfg["deid"], cfg["run"]))


def _tsne(feats, regions, volumes, tcfg: dict, seed: int) -> pd.DataFrame:
    from sklearn.manifold import TSNE

    x = np.concatenate([feats[i][0] for i in volumes])
    reg = np.concatenate([regions[i] for i in volumes])
    vol = np.concatenate([[k] * len(regions[i]) for k, i in enumerate(volumes)])
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(x), min(len(x), int(tcfg["max_tokens"])), replace=False))
    perplexity = min(float(tcfg["perplexity"]), (len(keep) - 1) / 3.0)
    emb = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x[keep])
    return pd.DataFrame(
        {"x": emb[:, 0], "y": emb[:, 1], "region": [ar.REGIONS[r] for r in reg[keep]], "volume": vol[keep]}
    )
