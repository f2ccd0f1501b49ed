"""Do an encoder's frozen token features show where a finding is? Token-level ground truth from the synthetic
patients, and a grouped cross-validated linear probe of lesion tokens against the same volumes' other tokens.

A diagnostic of the demo (the study-level probe's test AUROC mixes the encoder with the probe, the ontology's
co-occurring labels and about 40 test studies per modality). Token level asks one question of the features alone.
The ground truth is exact: every finding that adds a lesion tissue is a *layer* (a fractional map of that tissue
in a box of the template grid, :class:`neurovfm.synth.lesions.Layer`); the layer maps are carried onto each
preprocessed volume by the same index -> template map as the anatomy analysis
(:func:`neurovfm.analysis.anatomy_regions.volume_to_template`) and averaged per token.

Findings that only deform or thin tissue (atrophy, ventriculomegaly, midline shift, fractures of the base maps)
have no layer and are not scored here: they have no single token where they "are".
"""

from __future__ import annotations

import numpy as np

from neurovfm.analysis import anatomy_regions as ar


def layer_maps(patient, template_shape) -> dict[str, np.ndarray]:
    """Lesion tissue -> float32 (Z, Y, X) fraction on the template grid (overlapping layers of one tissue: max)."""
    out: dict[str, np.ndarray] = {}
    for layer in patient.layers:
        m = out.setdefault(layer.tissue, np.zeros(template_shape, np.float32))
        np.maximum(m[layer.box], layer.frac, out=m[layer.box])
    return out


def token_means(voxels: np.ndarray, patch) -> np.ndarray:
    """Mean of each token of a whole-patch volume (slices, rows, cols) -> (slices/ps, rows/pr, cols/pc)."""
    ps, pr, pc = (int(p) for p in patch)
    s, r, c = voxels.shape
    if s % ps or r % pr or c % pc:
        raise ValueError(f"volume {voxels.shape} is not a whole number of {tuple(patch)} tokens")
    return voxels.reshape(s // ps, ps, r // pr, pr, c // pc, pc).mean(axis=(1, 3, 5))


def volume_token_fractions(
    entry: dict, spacing, patch, patient, anat, maps: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Lesion tissue -> float32 token grid of the fraction of each token of the volume ``entry`` (a shard index
    record) that the tissue fills."""
    aff = ar.volume_to_template(entry, spacing, patient.native_to_lps, anat)
    return {
        t: token_means(ar.sample(m, aff, entry["shape"], order=1).astype(np.float32), patch).astype(np.float32)
        for t, m in maps.items()
    }


def label_tokens(
    coords: np.ndarray, fractions: dict[str, np.ndarray], positive: float, negative: float, margin: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """For stored tokens at ``coords`` [n, 3]: (label [n] int8: 1 lesion, 0 control, -1 neither, tissue [n] object).

    Lesion: some tissue fills at least ``positive`` of the token (the tissue that fills most is named). Control:
    every tissue fills at most ``negative`` of the token and of its neighbours within ``margin`` tokens (so that
    partial-volume edges count as neither).
    """
    from scipy import ndimage as ndi

    n = len(coords)
    label, tissue = np.full(n, -1, np.int8), np.full(n, "", object)
    if not fractions:
        label[:] = 0
        return label, tissue
    names = sorted(fractions)
    stack = np.stack([fractions[t] for t in names])
    idx = tuple(np.asarray(coords, int).T)
    best = stack.max(axis=0)
    near = ndi.maximum_filter(best, size=2 * margin + 1, mode="constant") if margin else best
    at, near_at = best[idx], near[idx]
    pos = at >= positive
    label[pos] = 1
    tissue[pos] = np.asarray(names, object)[stack.argmax(axis=0)[idx][pos]]
    label[(near_at <= negative) & ~pos] = 0
    return label, tissue


PROBES = ("linear", "mlp")


def probe_model(kind: str, c: float, seed: int):
    """A standardised probe: ``linear`` (class-weighted L2 logistic regression, inverse penalty ``c``) or ``mlp``
    (one hidden layer of 64 ReLU units, L2 penalty 1e-2, Adam with early stopping on a tenth of the fold)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "linear":
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000, class_weight="balanced"))
    if kind == "mlp":
        mlp = MLPClassifier(
            hidden_layer_sizes=(64,),
            alpha=1e-2,
            max_iter=300,
            early_stopping=True,
            n_iter_no_change=10,
            random_state=seed,
        )
        return make_pipeline(StandardScaler(), mlp)
    raise ValueError(f"unknown probe {kind!r}; choose one of {PROBES}")


def grouped_oof_scores(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    n_folds: int = 5,
    c: float = 0.1,
    seed: int = 0,
    probe: str = "linear",
) -> np.ndarray:
    """Out-of-fold scores [n] of a standardised probe (:func:`probe_model`; decision function of the linear one,
    positive-class probability of the MLP); folds keep each group (patient) on one side
    (``StratifiedGroupKFold``)."""
    from sklearn.model_selection import StratifiedGroupKFold

    y = np.asarray(y).astype(int)
    if y.min() == y.max():
        raise ValueError("token labels need both lesion and control tokens")
    n_groups = len(np.unique(groups))
    if n_groups < n_folds:
        raise ValueError(f"{n_groups} patients are too few for {n_folds} folds")
    scores = np.full(len(y), np.nan)
    for train, held in StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(x, y, groups):
        if y[train].min() == y[train].max():
            raise ValueError("a training fold holds tokens of one label only: too few lesion tokens for these folds")
        model = probe_model(probe, c, seed)
        model.fit(x[train], y[train])
        held_x = x[held]
        scores[held] = model.decision_function(held_x) if probe == "linear" else model.predict_proba(held_x)[:, 1]
    return scores


def patient_bootstrap_auroc(
    y: np.ndarray,
    scores: dict[str, np.ndarray],
    groups: np.ndarray,
    n_boot: int,
    seed: int,
    alpha: float = 0.05,
    chunk: int = 256,
) -> dict[str, tuple[float, float, float]]:
    """Name -> (AUROC, lo, hi) over the same patient resamples for every name (the project's cluster bootstrap,
    :func:`neurovfm.analysis.resample.cluster_count_chunks` and :class:`~neurovfm.analysis.resample.SubsetAUROC`;
    a resample without both labels gives NaN and is ignored); with a name ``random`` also ``<name>-random``
    paired differences."""
    from neurovfm.analysis.resample import SubsetAUROC, cluster_count_chunks
    from neurovfm.eval.bootstrap import percentile_ci

    engines = {k: SubsetAUROC(sc, y, np.ones((1, len(y)), bool)) for k, sc in scores.items()}
    reps = {k: [] for k in scores}
    for counts in cluster_count_chunks(groups, n_boot, seed, chunk):
        for k, eng in engines.items():
            reps[k].append(eng(counts)[:, 0])
    reps = {k: np.concatenate(v) for k, v in reps.items()}
    point = {k: float(eng.point()[0]) for k, eng in engines.items()}

    def ci(values):
        lo, hi = percentile_ci(values[:, None], alpha)
        return float(lo[0]), float(hi[0])

    out = {k: (point[k], *ci(reps[k])) for k in scores}
    if "random" in scores:
        for k in scores:
            if k != "random":
                out[f"{k}-random"] = (point[k] - point["random"], *ci(reps[k] - reps["random"]))
    return out


TOKEN_KEYS = ("label", "tissue", "matched", "modality", "patient", "series", "window", "position", "coords")


def match_controls(
    lesion: np.ndarray, candidates: np.ndarray, per_lesion: int, rng: np.random.Generator, k: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Intensity-matched hard negatives: for every lesion token's statistics (rows of ``lesion`` [m, F]) the
    ``per_lesion`` nearest lesion-free candidates (rows of ``candidates`` [c, F]), greedy and without replacement,
    in candidate-standardised space; lesions are served in a random order, one control per lesion per round.
    Returns (candidate index [q], matched lesion index [q]); q < m * per_lesion when candidates run out."""
    from scipy.spatial import cKDTree

    lesion, candidates = np.asarray(lesion, float), np.asarray(candidates, float)
    if len(lesion) == 0 or len(candidates) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    scale = candidates.std(axis=0) + 1e-6
    cz, lz = candidates / scale, lesion / scale
    tree = cKDTree(cz)
    used = np.zeros(len(cz), bool)
    out_c, out_l = [], []
    for _ in range(per_lesion):
        for j in rng.permutation(len(lz)):
            if used.all():
                break
            _, near = tree.query(lz[j], k=min(k, len(cz)))
            free = [int(c) for c in np.atleast_1d(near) if not used[c]]
            if free:
                c = free[0]
            else:  # the k nearest are taken: scan the rest
                rest = np.flatnonzero(~used)
                c = int(rest[np.argmin(((cz[rest] - lz[j]) ** 2).sum(axis=1))])
            used[c] = True
            out_c.append(c)
            out_l.append(int(j))
    return np.asarray(out_c, int), np.asarray(out_l, int)


def collect_tokens(
    cfg: dict,
    shard_indices: list,
    feature_dirs: dict[str, list],
    truth_dir,
    positive: float = 0.3,
    negative: float = 0.02,
    controls_per_lesion: int = 3,
    control_brain: float | None = 0.5,
    raw: bool = True,
    seed: int = 0,
    progress=None,
    max_studies: int | None = None,
    controls: str = "brain",
) -> dict:
    """Lesion and control tokens of every volume (of the given shard indices) whose study has a layer finding.

    ``controls``: ``"brain"`` (lesion-free tokens that grey + white matter fill to at least ``control_brain``;
    ``control_brain=None``: any lesion-free token) or ``"matched"`` (intensity-matched hard negatives: for each
    lesion token the lesion-free token(s) of the same volume, anywhere in the head, whose voxel mean and standard
    deviation are nearest, :func:`match_controls`; a CSF-like lesion meets ventricle and sulci, a blood-like one
    bone or vessels). Every token also gets ``"matched"``: for a lesion token its tissue, for a matched control
    the tissue of the lesion it was matched to (``""`` for brain controls), so per-tissue probes are one-sided.

    ``feature_dirs``: encoder -> feature index paths (one per shard index, same order); CT volumes are read in
    the brain window. Per volume every lesion token is kept with ``controls_per_lesion`` times as many control
    tokens of the same volume (seeded). Returns ``{"label", "tissue", "matched", "modality", "patient",
    "series", "features": {encoder: [n, D]}, "volumes_used", "volumes_skipped": {reason: count}}`` (plus, among
    the features, ``"raw"``: the token's voxels, a pixel reference, and ``"intensity"``: their hand-crafted
    statistics, when ``raw``).
    """
    from neurovfm.analysis.anatomy_context import intensity_statistics
    from neurovfm.analysis.anatomy_run import truth_by_study
    from neurovfm.analysis.synth_patients import iter_patients
    from neurovfm.features.store import FeatureReader
    from neurovfm.models.patch_embed import patchify
    from neurovfm.store.reader import ShardReader
    from neurovfm.synth.anatomy import load_anatomy

    import torch

    truth = truth_by_study(cfg, truth_dir)
    readers = [ShardReader(p) for p in shard_indices]
    feats = {enc: [FeatureReader(p) for p in paths] for enc, paths in feature_dirs.items()}
    entry_of = {
        enc: [{(e["series_id"], e["window"]): k for k, e in enumerate(fr.entries)} for fr in frs]
        for enc, frs in feats.items()
    }
    vols_by_uid: dict[str, list] = {}
    for r, reader in enumerate(readers):
        for i, v in enumerate(reader.volumes):
            rec = truth.get(v["study_id"])
            if rec is not None and rec["findings"]:
                vols_by_uid.setdefault(rec["study_instance_uid"], []).append((r, i))
    if max_studies is not None:
        vols_by_uid = {u: vols_by_uid[u] for u in sorted(vols_by_uid)[:max_studies]}
    anat = load_anatomy()
    rng = np.random.default_rng(seed)
    if controls not in ("brain", "matched"):
        raise ValueError(f"controls must be 'brain' or 'matched', not {controls!r}")
    cols = {k: [] for k in TOKEN_KEYS}
    skipped = {"no layer finding": 0, "no lesion token": 0, "no control token": 0}
    out_feats = {enc: [] for enc in feats} | ({"raw": [], "intensity": []} if raw else {})
    for n_done, (uid, patient) in enumerate(iter_patients(cfg, set(vols_by_uid))):
        maps = layer_maps(patient, anat.shape)
        brain = (
            None
            if (control_brain is None or controls == "matched")
            else ar.tissue_mask(patient.frac, ("gm", "wm"), 0.5).astype(np.float32)
        )
        if progress is not None:
            progress(n_done + 1, len(vols_by_uid))
        if not maps:  # deformations only (atrophy, shift, fractures): nothing local to score
            skipped["no layer finding"] += len(vols_by_uid[uid])
            continue
        for r, i in vols_by_uid[uid]:
            reader, v = readers[r], readers[r].volumes[i]
            window = "mri" if v["modality"] == "MR" else "brain"
            fr_ = volume_token_fractions(v, reader.index["spacing_mm"], reader.index["patch"], patient, anat, maps)
            ks = {enc: entry_of[enc][r].get((v["series_id"], window)) for enc in feats}
            if any(k is None for k in ks.values()):
                raise KeyError(f"series {v['series_id']} ({window}) is missing from a feature store")
            coords = np.asarray(feats[next(iter(feats))][r].coords(ks[next(iter(feats))]), int)
            for enc, k in ks.items():
                if not np.array_equal(np.asarray(feats[enc][r].coords(k), int), coords):
                    raise ValueError(f"encoder {enc}: token coordinates of series {v['series_id']} differ")
            label, tissue = label_tokens(coords, fr_, positive, negative)
            if brain is not None:
                in_brain = volume_token_fractions(
                    v, reader.index["spacing_mm"], reader.index["patch"], patient, anat, {"brain": brain}
                )["brain"]
                label[(label == 0) & (in_brain[tuple(coords.T)] < control_brain)] = -1
            pos, neg = np.where(label == 1)[0], np.where(label == 0)[0]
            if len(pos) == 0 or len(neg) == 0:  # e.g. a finding outside this volume's coverage
                skipped["no lesion token" if len(pos) == 0 else "no control token"] += 1
                continue
            voxels = None
            if raw or controls == "matched":
                image = torch.from_numpy(np.asarray(reader.channel(i, window), np.float32)[None] / 255.0)
                patches, _ = patchify(image, reader.index["patch"])
                voxels = patches.numpy()[np.ravel_multi_index(tuple(coords.T), tuple(v["mask"]["shape"]))]
            matched = np.full(len(label), "", object)
            matched[pos] = tissue[pos]
            if controls == "matched":
                stats = intensity_statistics(voxels)[:, :2]  # voxel mean and standard deviation
                c_idx, l_idx = match_controls(stats[pos], stats[neg], controls_per_lesion, rng)
                matched[neg[c_idx]] = tissue[pos][l_idx]
                neg = np.sort(neg[c_idx])
            else:
                neg = np.sort(rng.choice(neg, min(len(neg), controls_per_lesion * len(pos)), replace=False))
            keep = np.concatenate([pos, neg])
            for enc, k in ks.items():
                out_feats[enc].append(np.asarray(feats[enc][r].features(k), np.float32)[keep])
            if raw:
                out_feats["raw"].append(voxels[keep])
                out_feats["intensity"].append(intensity_statistics(voxels[keep]))
            cols["label"].append(label[keep])
            cols["tissue"].append(tissue[keep])
            cols["matched"].append(matched[keep])
            cols["modality"].append(np.full(len(keep), v["modality"], object))
            cols["patient"].append(np.full(len(keep), v["patient_id"], object))
            cols["series"].append(np.full(len(keep), v["series_id"], object))
            cols["window"].append(np.full(len(keep), window, object))
            cols["position"].append(keep)
            cols["coords"].append(coords[keep])
    for reader in readers:
        reader.close()
    for frs in feats.values():
        for fr in frs:
            fr.close()
    if not cols["label"]:
        raise ValueError("no volume has both lesion and control tokens")
    res = {k: np.concatenate(v) for k, v in cols.items()}
    res["features"] = {k: np.concatenate(v) for k, v in out_feats.items()}
    res["volumes_used"] = len(cols["label"])
    res["volumes_skipped"] = skipped
    return res


REFERENCES = ("raw", "intensity")


def save_tokens(path, tokens: dict) -> None:
    """The token selection of :func:`collect_tokens` (``.npz``; strings stored as unicode) with the pixel and
    intensity references (``raw`` as float16: voxel / 255 to 3 significant digits) but no encoder features."""
    from neurovfm.utils.atomic import atomic_path

    tokens = with_matched(tokens)
    arrays = {
        k: (np.asarray(tokens[k]).astype(str) if np.asarray(tokens[k]).dtype == object else tokens[k])
        for k in TOKEN_KEYS
    }
    for name in REFERENCES:
        if name in tokens.get("features", {}):
            arrays[f"ref_{name}"] = tokens["features"][name].astype(np.float16 if name == "raw" else np.float32)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)


def load_tokens(path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        missing = set(TOKEN_KEYS) - set(z.files) - {"matched"}
        if missing:
            raise ValueError(f"{path} is not a token selection (missing {sorted(missing)})")
        out = {k: z[k] for k in TOKEN_KEYS if k in z.files}
        out["references"] = {n: z[f"ref_{n}"].astype(np.float32) for n in REFERENCES if f"ref_{n}" in z.files}
    return with_matched(out)


def with_matched(tokens: dict) -> dict:
    """A selection made before matched controls existed has brain controls: ``matched`` is the lesion token's
    tissue and empty for controls."""
    if "matched" in tokens:
        return tokens
    return {**tokens, "matched": np.where(np.asarray(tokens["label"]) == 1, np.asarray(tokens["tissue"]), "")}


def features_at(tokens: dict, feature_indices: list) -> np.ndarray:
    """[n, D] features of one encoder at the selected tokens; ``feature_indices``: that encoder's feature index
    paths (any split order). The stored coordinates must match the selection's, token by token."""
    from neurovfm.features.store import FeatureReader

    readers = [FeatureReader(p) for p in feature_indices]
    where = {(e["series_id"], e["window"]): (r, k) for r, fr in enumerate(readers) for k, e in enumerate(fr.entries)}
    out = None
    series, window = np.asarray(tokens["series"]).astype(str), np.asarray(tokens["window"]).astype(str)
    order = np.lexsort((window, series))
    bounds = np.flatnonzero(
        np.r_[True, (series[order][1:] != series[order][:-1]) | (window[order][1:] != window[order][:-1]), True]
    )
    for a, b in zip(bounds[:-1], bounds[1:]):
        idx = order[a:b]
        key = (series[idx[0]], window[idx[0]])
        if key not in where:
            raise KeyError(f"series {key[0]} ({key[1]}) is not in these feature stores")
        r, k = where[key]
        pos = np.asarray(tokens["position"])[idx]
        if not np.array_equal(np.asarray(readers[r].coords(k), int)[pos], np.asarray(tokens["coords"])[idx]):
            raise ValueError(f"series {key[0]}: stored token coordinates differ from the selection's")
        feats = np.asarray(readers[r].features(k), np.float32)[pos]
        if out is None:
            out = np.zeros((len(series), feats.shape[1]), np.float32)
        out[idx] = feats
    for fr in readers:
        fr.close()
    if out is None:
        raise ValueError("the token selection is empty")
    return out
