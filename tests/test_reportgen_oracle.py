"""The positive control of ``benchmarks/reportgen_diagnose.py --oracle``: every token of a study is shifted by one
fixed code of its labels, so studies with the same labels share a shift, studies with other labels do not, a
study without a label row is left as it is, and the pooled features then separate a label perfectly (what the
report generator's shuffled-image control is compared with)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from reportgen_diagnose import OracleTokens  # noqa: E402


class FakeStore:
    """Two series of random tokens per study, fixed per study id."""

    dim = 16

    def entries(self, sid):
        return [0, 1]

    def has(self, sid):
        return True

    def __call__(self, sid):
        g = torch.Generator().manual_seed(int(sid[1:]))
        return [torch.randn(40, self.dim, generator=g), torch.randn(300, self.dim, generator=g)]


def test_oracle_adds_one_code_per_label_set():
    targets = {f"s{i}": ("CT", np.array([i % 2, 1, 0], dtype=np.float32)) for i in range(20)}
    oracle = OracleTokens(FakeStore(), targets, amplitude=2.0, n_tokens=64)
    base = FakeStore()
    shifts = {}
    for sid in ("s0", "s1", "s2"):
        series = oracle(sid)
        assert [len(t) for t in series] == [40, 64]  # at most n_tokens, evenly strided
        keep = torch.linspace(0, 299, 64).round().long()
        d0, d1 = series[0] - base(sid)[0], series[1] - base(sid)[1][keep]
        torch.testing.assert_close(d0, d0[:1].expand_as(d0))  # one shift for every token of the study
        torch.testing.assert_close(d1[0], d0[0])
        shifts[sid] = d0[0]
    torch.testing.assert_close(shifts["s0"], shifts["s2"])  # same labels, same code
    assert not torch.allclose(shifts["s0"], shifts["s1"])
    codes = oracle.codes["CT"]
    torch.testing.assert_close(shifts["s1"], 2.0 * (codes[0] + codes[1]))
    torch.testing.assert_close(codes.norm(dim=1), torch.ones(3))
    # a study without a label row keeps its tokens
    unlabelled = OracleTokens(FakeStore(), {}, amplitude=2.0)
    assert all(torch.equal(a, b) for a, b in zip(unlabelled("s3"), base("s3")))
    # the pooled features of the oracle separate the varying label, those of the plain store do not
    pooled = np.stack([torch.cat(oracle(f"s{i}")).mean(0).numpy() for i in range(20)])
    plain = np.stack([torch.cat(base(f"s{i}")).mean(0).numpy() for i in range(20)])
    y = np.array([i % 2 for i in range(20)])
    direction = codes[0].numpy()
    gap = lambda x: abs((x[y == 1] @ direction).mean() - (x[y == 0] @ direction).mean())  # noqa: E731
    assert gap(pooled) > 1.5 and gap(plain) < 0.3


def test_study_noise_hides_the_code_in_part():
    """``study_noise``: one fixed random shift per study on top of the code, so two studies with the same labels
    no longer share a shift, the same study keeps its own, and the label's pooled gap shrinks against the spread."""
    targets = {f"s{i}": ("CT", np.array([i % 2, 1, 0], dtype=np.float32)) for i in range(40)}
    base = FakeStore()
    clean = OracleTokens(FakeStore(), targets, amplitude=2.0, n_tokens=64)
    noisy = OracleTokens(FakeStore(), targets, amplitude=2.0, n_tokens=64, study_noise=16.0)

    def shift(oracle, sid):
        return oracle(sid)[0][0] - base(sid)[0][0]

    assert not torch.allclose(shift(noisy, "s0"), shift(noisy, "s2"))  # same labels, other noise
    torch.testing.assert_close(shift(noisy, "s0"), shift(noisy, "s0"))  # fixed per study
    assert 10 < (shift(noisy, "s0") - shift(clean, "s0")).norm() < 22  # norm about 16 in 16 dimensions
    y = np.array([i % 2 for i in range(40)])

    def projections(oracle):
        return np.stack([shift(oracle, f"s{i}").numpy() for i in range(40)]) @ oracle.codes["CT"][0].numpy()

    x = projections(clean)
    assert x[y == 0].std() < 1e-5 and abs(x[y == 1].mean() - x[y == 0].mean()) > 1.5  # perfectly separated
    x = projections(noisy)
    separation = abs(x[y == 1].mean() - x[y == 0].mean()) / x[y == 0].std()
    assert 0.1 < separation < 3.0, separation  # still there, no longer perfect
