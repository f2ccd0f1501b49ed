"""The paper's analyses as engines over plain arrays and DataFrames (no probe code imported here).

* :mod:`neurovfm.analysis.label_efficiency` -- Platt-calibrated F1 vs training positives, OLS with HC3,
  ANCOVA across encoders, label-equivalence folds (Fig. 2e).
* :mod:`neurovfm.analysis.cross_modal` -- zero-shot CT <-> MRI probe transfer vs native probes (Fig. 3c).
* :mod:`neurovfm.analysis.subgroups` -- paired-bootstrap AUROC differentials per subgroup (Ext. Data Fig. 11).
* :mod:`neurovfm.analysis.external` -- the external-benchmark protocol: subject-grouped stratified
  hold-out, 8-fold CV, fold ensembles, subject-level CIs, frozen transfer (Ext. Data Fig. 13).
* :mod:`neurovfm.analysis.resample` -- subset / cluster bootstrap replicates on the eval engine.
"""
