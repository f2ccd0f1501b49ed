"""Fitting one study-level probe on frozen features, and choosing its hyperparameters on validation.

Only the ``train`` and ``val`` :class:`~neurovfm.probes.bags.BagSet` ever enter this module: weights are fitted on
train; the epoch to keep and the hyperparameter candidate are chosen by the validation mean AUROC over the classes
that validation can score (at least ``min_val_pos`` positives and negatives), falling back to the validation loss
when none can be scored. The test split is predicted only after everything here has finished.

Loss: binary cross-entropy per class, with positives weighted by n_negative / n_positive of the training split
(``pos_weight: balanced``, capped at ``pos_weight_max``), averaged over the classes with at least ``min_train_pos``
training positives. A class without them cannot be learned; left in the loss, dozens of such all-negative classes
dominate the shared layers' gradients early on and stall the rare classes that can be learned (measured on a toy
with 3 signal classes among 82: test AUROC 0.65 with, 0.96 without them). Such classes still get an (untrained)
output, so the tables report them rather than drop them.
Optimiser: AdamW; learning rate linear warm-up from ``lr.start`` to the candidate's peak, then half-cosine to
``lr.final`` (the authors' probe schedule, same curve as pretraining).
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from neurovfm.eval.metrics import auroc
from neurovfm.jepa.schedules import learning_rate
from neurovfm.models.probes import build_probe
from neurovfm.utils.progress import Progress

from .bags import BagSet

log = logging.getLogger("neurovfm")

GRID_KEYS = ("lr", "weight_decay", "dropout")


def class_pos_weight(labels: np.ndarray, mode: str = "balanced", max_weight: float | None = None) -> np.ndarray:
    """Per-class positive weight for BCE: n_neg / n_pos (``balanced``) or ones (``none``)."""
    y = np.asarray(labels, dtype=float)
    if mode == "none":
        return np.ones(y.shape[1])
    if mode != "balanced":
        raise ValueError(f"pos_weight must be 'balanced' or 'none', got {mode!r}")
    n_pos = y.sum(axis=0)
    n_neg = y.shape[0] - n_pos
    w = np.where(n_pos > 0, n_neg / np.maximum(n_pos, 1), 1.0)
    return np.minimum(w, max_weight) if max_weight else w


def grid_candidates(grid: dict) -> list[dict]:
    """Every combination of the grid's lists, in a fixed order (keys sorted)."""
    unknown = sorted(set(grid) - set(GRID_KEYS))
    if unknown:
        raise ValueError(f"probe grid keys {unknown} are not tunable; choose from {GRID_KEYS}")
    keys = sorted(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def mean_auroc(scores: np.ndarray, labels: np.ndarray, min_pos: int = 1) -> tuple[float, int]:
    """Mean AUROC over classes with at least ``min_pos`` positives and negatives, and how many were scored."""
    vals = []
    for j in range(labels.shape[1]):
        n_pos = int(labels[:, j].sum())
        if n_pos >= min_pos and labels.shape[0] - n_pos >= min_pos:
            vals.append(auroc(scores[:, j], labels[:, j].astype(bool)))
    return (float(np.mean(vals)) if vals else float("nan")), len(vals)


def token_batches(bags: BagSet, max_tokens: int) -> list[list[int]]:
    """Consecutive studies grouped so that each batch holds at most ``max_tokens`` tokens (a longer bag alone)."""
    batches, cur, n = [], [], 0
    for i, t in enumerate(bags.n_tokens):
        if cur and n + t > max_tokens:
            batches.append(cur)
            cur, n = [], 0
        cur.append(i)
        n += int(t)
    if cur:
        batches.append(cur)
    return batches


def resolve_device(device: str | None) -> torch.device:
    """``auto``/None: CUDA when available, else the CPU; or a torch device string."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def predict(model: nn.Module, bags: BagSet, max_tokens: int) -> np.ndarray:
    """Study logits [n_studies, n_classes] over whole bags (on the model's device)."""
    model.eval()
    dev = model_device(model)
    out = np.zeros((len(bags), len(bags.class_names)), dtype=np.float64)
    for batch in token_batches(bags, max_tokens):
        tokens, cu = bags.pack(batch)
        out[batch] = model.study_logits(tokens.to(dev), cu.to(dev)).double().cpu().numpy()
    return out


@dataclass
class FitResult:
    model: nn.Module
    hparams: dict
    best_epoch: int
    val_auroc: float
    val_loss: float
    history: list = field(default_factory=list)
    target_scale: tuple | None = None  # regression: (mean, std) of the training targets the outputs are in units of

    def decode(self, outputs: np.ndarray) -> np.ndarray:
        """Model outputs -> predictions: logits as they are (classification), targets' units (regression)."""
        if self.target_scale is None:
            return outputs
        mean, std = self.target_scale
        return outputs * std + mean


def _val_key(val_auroc: float, val_loss: float) -> tuple:
    """Larger is better: scored classes' mean AUROC first, then lower validation loss."""
    return (val_auroc if math.isfinite(val_auroc) else -math.inf, -val_loss)


def fit_probe(
    train: BagSet, val: BagSet, settings: dict, hparams: dict, seed: int, keep_epoch: int | None = None
) -> FitResult:
    """Train one probe for ``settings['epochs']`` epochs; keep the epoch with the best validation score, or the
    weights after epoch ``keep_epoch`` when that was chosen elsewhere (cross-validation; training stops there, on
    the learning-rate schedule of the full ``epochs``).

    ``settings``: the ``probes`` config section (optional ``task``: classification, or regression -- MSE on
    standardised targets, :meth:`FitResult.decode` maps outputs back; kind, standardize, min_train_pos, hidden, attn_hidden, batch_size, epochs, lr, warmup_fraction,
    betas, pos_weight, pos_weight_max, max_train_tokens, eval_max_tokens, min_val_pos, grad_clip,
    progress_every_s). ``hparams``: this candidate's values of ``GRID_KEYS``.
    """
    if len(train) == 0 or len(val) == 0:
        raise ValueError(f"a probe needs training and validation studies (train {len(train)}, val {len(val)})")
    if keep_epoch is not None and not 1 <= keep_epoch <= int(settings["epochs"]):
        raise ValueError(f"keep_epoch {keep_epoch} is outside the {settings['epochs']} training epochs")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    dev = resolve_device(settings["device"])
    model = build_probe(
        settings["kind"],
        train.dim,
        len(train.class_names),
        hidden=settings["hidden"],
        attn_hidden=settings["attn_hidden"],
        dropout=float(hparams["dropout"]),
    )
    if settings["standardize"]:
        model.input_norm.set_stats(*train.token_stats())
    model.to(dev)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": float(hparams["weight_decay"])}, {"params": no_decay, "weight_decay": 0.0}],
        lr=float(settings["lr"]["start"]),
        betas=tuple(settings["betas"]),
    )
    regression = settings.get("task", "classification") == "regression"  # the diagnostic probes classify
    scale = None
    if regression:  # mean squared error on standardised targets; selection by validation loss
        mean, std = train.labels.mean(axis=0), train.labels.std(axis=0)
        scale = (mean.astype(np.float64), np.where(std > 0, std, 1.0).astype(np.float64))
        centre, spread = (torch.tensor(v, dtype=torch.float32, device=dev) for v in scale)

        def loss_fn(logits, target):
            return nn.functional.mse_loss(logits, (target - centre) / spread)
    else:
        pos_w = torch.tensor(
            class_pos_weight(train.labels, settings["pos_weight"], settings["pos_weight_max"]),
            dtype=torch.float32,
            device=dev,
        )
        learnable = train.labels.sum(axis=0) >= settings["min_train_pos"]
        if not learnable.any():
            raise ValueError(f"no class has {settings['min_train_pos']} training positives: nothing to learn")
        class_mask = torch.from_numpy(learnable.astype(np.float32)).to(dev)

        def loss_fn(logits, target):
            per = nn.functional.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_w, reduction="none")
            return (per * class_mask).sum() / (class_mask.sum() * per.shape[0])

    bs = int(settings["batch_size"])
    steps_per_epoch = math.ceil(len(train) / bs)
    epochs = int(settings["epochs"])
    total = steps_per_epoch * epochs
    warmup = int(round(settings["warmup_fraction"] * total))
    y_train = torch.from_numpy(train.labels).to(dev)
    y_val = val.labels
    best, history, step = None, [], 0
    prog = Progress(
        epochs, f"probe {settings['kind']} {hparams}", log, every_s=settings["progress_every_s"], unit="epochs"
    )
    for epoch in range(1, epochs + 1):
        model.train()
        order = rng.permutation(len(train))
        losses = []
        for b in range(steps_per_epoch):
            idx = order[b * bs : (b + 1) * bs]
            lr = learning_rate(
                step, total, settings["lr"]["start"], float(hparams["lr"]), settings["lr"]["final"], warmup
            )
            for g in opt.param_groups:
                g["lr"] = lr
            tokens, cu = train.pack(idx, settings["max_train_tokens"], rng)
            logits, _ = model(tokens.to(dev, non_blocking=True), cu.to(dev))
            loss = loss_fn(logits, y_train[idx])
            if not torch.isfinite(loss):
                raise FloatingPointError(f"probe loss is {loss.item()} at epoch {epoch}, step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if settings["grad_clip"]:
                nn.utils.clip_grad_norm_(model.parameters(), settings["grad_clip"])
            opt.step()
            losses.append(loss.item())
            step += 1
        val_logits = predict(model, val, settings["eval_max_tokens"])
        val_loss = float(loss_fn(torch.from_numpy(val_logits).float().to(dev), torch.from_numpy(y_val).to(dev)))
        val_auc, n_scored = (float("nan"), 0) if regression else mean_auroc(val_logits, y_val, settings["min_val_pos"])
        history.append(
            {
                "epoch": epoch,
                "step": step,
                "lr": lr,
                "train_loss": float(np.mean(losses)),
                "val_loss": val_loss,
                "val_mean_auroc": val_auc,
                "val_classes_scored": n_scored,
            }
        )
        better = (
            epoch == keep_epoch
            if keep_epoch is not None
            else (best is None or _val_key(val_auc, val_loss) > _val_key(best[1], best[2]))
        )
        if better:
            best = (epoch, val_auc, val_loss, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
        prog.update()
        if keep_epoch is not None and epoch == keep_epoch:
            break  # the kept weights are final; later epochs cannot change them (the schedule is per total steps)
    prog.close()
    model.load_state_dict(best[3], strict=True)
    model.eval()
    return FitResult(model, dict(hparams), best[0], best[1], best[2], history, scale)


def select_probe(train: BagSet, val: BagSet, settings: dict, seed: int) -> tuple[FitResult, list[dict], list[dict]]:
    """Fit every grid candidate (same seed each) and keep the best on validation (``selection: validation``),
    choose candidate and epoch by cross-validation over train + validation (``selection: cv``, see
    :func:`select_probe_cv`), or keep the one candidate's weights after ``fixed_epoch`` (``selection: fixed``, see
    :func:`select_probe_fixed`).

    Returns the chosen fit, one row per candidate (its values, best epoch, validation mean AUROC and loss, chosen) and
    the per-epoch history of every candidate.
    """
    mode = settings["selection"]
    if mode == "cv":
        return select_probe_cv(train, val, settings, seed)
    if mode == "fixed":
        return select_probe_fixed(train, val, settings, seed)
    if mode != "validation":
        raise ValueError(f"probes.selection must be 'validation', 'cv' or 'fixed', got {mode!r}")
    rows, history, best = [], [], None
    for c, hp in enumerate(grid_candidates(settings["grid"])):
        fit = fit_probe(train, val, settings, hp, seed)
        log.info(
            "candidate %d %s: best epoch %d, validation mean AUROC %.4f, loss %.4f",
            c,
            hp,
            fit.best_epoch,
            fit.val_auroc,
            fit.val_loss,
        )
        rows.append(
            {
                "candidate": c,
                **hp,
                "best_epoch": fit.best_epoch,
                "val_mean_auroc": fit.val_auroc,
                "val_loss": fit.val_loss,
            }
        )
        history.extend({"candidate": c, **h} for h in fit.history)
        if best is None or _val_key(fit.val_auroc, fit.val_loss) > _val_key(best[1].val_auroc, best[1].val_loss):
            best = (c, fit)
    for r in rows:
        r["chosen"] = r["candidate"] == best[0]
    return best[1], rows, history


def select_probe_fixed(
    train: BagSet, val: BagSet, settings: dict, seed: int
) -> tuple[FitResult, list[dict], list[dict]]:
    """The grid's single candidate fitted on train, its weights after epoch ``fixed_epoch`` kept (on the learning-rate
    schedule of all ``epochs``, so the weights equal those a longer fit has at that epoch). Nothing is chosen on
    held-out data: the epoch is a setting, fixed beforehand (the demo's from the pooled cross-validated curves of
    earlier runs, ``benchmarks/probe_epoch_choice.py``). One fit instead of ``cv_folds`` + 1; validation still sets
    the thresholds and is reported per epoch."""
    candidates = grid_candidates(settings["grid"])
    if len(candidates) != 1:
        raise ValueError(
            f"probes.selection 'fixed' needs a grid with one candidate (nothing is chosen), got {len(candidates)}"
        )
    epoch, epochs = settings.get("fixed_epoch"), int(settings["epochs"])
    if epoch is None or not 1 <= int(epoch) <= epochs:
        raise ValueError(
            f"probes.selection 'fixed' needs probes.fixed_epoch between 1 and epochs ({epochs}), got {epoch!r}"
        )
    hp = candidates[0]
    fit = fit_probe(train, val, settings, hp, seed, keep_epoch=int(epoch))
    log.info(
        "fixed epoch %d of %d, candidate %s: validation mean AUROC %.4f", fit.best_epoch, epochs, hp, fit.val_auroc
    )
    rows = [
        {
            "candidate": 0,
            **hp,
            "best_epoch": fit.best_epoch,
            "val_mean_auroc": fit.val_auroc,
            "val_loss": fit.val_loss,
            "chosen": True,
        }
    ]
    return fit, rows, [{"candidate": 0, **h, "phase": "final"} for h in fit.history]


def select_probe_cv(train: BagSet, val: BagSet, settings: dict, seed: int) -> tuple[FitResult, list[dict], list[dict]]:
    """Candidate and epoch with the best mean held-out AUROC over ``cv_folds`` folds of the pooled train +
    validation studies (:mod:`neurovfm.probes.attentive_cv`); then the probe is fitted on train alone with that
    candidate's full schedule and its weights after the chosen epoch are kept. The validation split still sets
    the thresholds (its studies are not in this final fit). Meant for small validation splits, where the best of
    many (epoch, candidate) points on a few studies is mostly noise."""
    from .attentive_cv import cv_histories, mean_curves  # noqa: PLC0415 (it imports this module)

    hist = cv_histories([train, val], settings, seed, n_folds=int(settings["cv_folds"]))
    curves = mean_curves(hist)
    top = curves.iloc[0]
    chosen, epoch = int(top["candidate"]), int(top["epoch"])
    candidates = grid_candidates(settings["grid"])
    fit = fit_probe(train, val, settings, candidates[chosen], seed, keep_epoch=epoch)
    log.info(
        "cross-validated choice: candidate %d %s, epoch %d (held-out mean AUROC %.4f); validation %.4f",
        chosen,
        candidates[chosen],
        epoch,
        top["held_mean_auroc"],
        fit.val_auroc,
    )
    rows = []
    for c, hp in enumerate(candidates):
        own = curves[curves["candidate"] == c].iloc[0]
        rows.append(
            {
                "candidate": c,
                **hp,
                "best_epoch": int(own["epoch"]),
                "cv_mean_auroc": own["held_mean_auroc"],
                "val_mean_auroc": fit.val_auroc if c == chosen else float("nan"),
                "val_loss": fit.val_loss if c == chosen else float("nan"),
                "chosen": c == chosen,
            }
        )
    history = [{**r, "phase": "cv"} for r in hist.to_dict("records")]
    history += [{"candidate": chosen, **h, "phase": "final"} for h in fit.history]
    return fit, rows, history
