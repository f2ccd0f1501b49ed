"""Extended Data Fig. 5a-b figure: files written, table = one row per sample of the batch, medians."""

import pandas as pd

from neurovfm.config import default_config
from neurovfm.jepa.toy import ToyVolumes
from neurovfm.plots.ed_masking import draw


def test_masking_figure(tmp_path):
    cfg = default_config(pretrain={"figure_samples": 24})
    medians = draw(cfg, ToyVolumes(n=30, grid=(9, 6, 6), seed=2), tmp_path / "ed_masking.png")
    for ext in ("png", "pdf", "csv"):
        assert (tmp_path / f"ed_masking.{ext}").stat().st_size > 0
    table = pd.read_csv(tmp_path / "ed_masking.csv")
    assert len(table) == 24 and set(table["modality"]) == {"MR", "CT"}
    assert table["config"].value_counts().tolist() == [12, 12]
    assert (table["context_fraction"] == table["n_context"] / table["n_foreground"]).all()
    assert medians["MR"] == table.loc[table.modality == "MR", "context_fraction"].median()
    assert 0.1 < medians["MR"] < 0.3 and 0.08 < medians["CT"] < 0.25
