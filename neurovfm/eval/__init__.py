"""Diagnostic evaluation: per-class metrics, validation thresholds, vectorised study-level bootstrap."""

from neurovfm.eval.bootstrap import (
    METRICS,
    TABLE_COLUMNS,
    BootstrapResult,
    bootstrap_indices,
    bootstrap_metrics,
    category_means,
    evaluate_classes,
    paired_auroc_difference,
    per_class_table,
    percentile_ci,
)
from neurovfm.eval.metrics import DEFAULT_MIN_POS, auroc, class_status, per_class_metrics, threshold_metrics
from neurovfm.eval.thresholds import apply_thresholds, select_thresholds, youden_threshold

__all__ = [
    "METRICS",
    "TABLE_COLUMNS",
    "BootstrapResult",
    "bootstrap_indices",
    "bootstrap_metrics",
    "category_means",
    "evaluate_classes",
    "paired_auroc_difference",
    "per_class_table",
    "percentile_ci",
    "DEFAULT_MIN_POS",
    "auroc",
    "class_status",
    "per_class_metrics",
    "threshold_metrics",
    "apply_thresholds",
    "select_thresholds",
    "youden_threshold",
]
