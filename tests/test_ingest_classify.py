"""Sequence family, contrast, localizer/derived and orientation rules."""

from __future__ import annotations

import numpy as np
import pytest

from neurovfm.ingest.classify import exclusion_reason, has_contrast, sequence_family
from neurovfm.ingest.geometry import gap_problem, orientation_label

PATTERNS = ["scout", "localizer", "mip", "mpr", "adc", "screen ?save", "3-plane", "fa map"]


@pytest.mark.parametrize(
    "modality,desc,agent,b,seq,family",
    [
        ("CT", "HEAD WO CONTRAST", None, None, (), "ct"),
        ("CT", "CTA HEAD", None, None, (), "ct_contrast"),
        ("CT", "Axial 5mm", "Omnipaque", None, (), "ct_contrast"),
        ("MR", "AX T1 MPRAGE", None, None, (), "t1"),
        ("MR", "SAG T1 POST GAD", None, None, (), "t1c"),
        ("MR", "t1_mprage_sag", "Gadavist", None, (), "t1c"),
        ("MR", "AX T1 FLAIR", None, None, (), "t1"),
        ("MR", "AX T2 FLAIR", None, None, (), "flair"),
        ("MR", "t2_tirm_tra_dark-fluid", None, None, (), "flair"),
        ("MR", "AX T2 FSE", None, None, ("SE",), "t2"),
        ("MR", "AX T2", None, None, ("SE", "IR"), "flair"),
        ("MR", "ep2d_diff_tra", None, None, (), "dwi"),
        ("MR", "AXIAL", None, 1000.0, ("EP",), "dwi"),
        ("MR", "AX SWAN", None, None, (), "swi"),
        ("MR", "AX GRE", None, None, (), "swi"),
        ("MR", "3D T1 GRE", None, None, (), "t1"),
        ("MR", "MRA COW", None, None, (), "other"),
    ],
)
def test_sequence_family(modality, desc, agent, b, seq, family):
    assert sequence_family(modality, desc, agent, b, seq) == family


def test_contrast_negation():
    assert not has_contrast("T1 PRE", None) and has_contrast("T1 POST", None)
    assert not has_contrast("CT HEAD W/O", None) and not has_contrast("x", "NONE")


@pytest.mark.parametrize(
    "desc,itype,reason",
    [
        ("3-Plane Loc", ("ORIGINAL", "PRIMARY"), "localizer"),
        ("Scout", ("ORIGINAL", "PRIMARY"), "localizer"),
        ("AX T2", ("ORIGINAL", "PRIMARY", "LOCALIZER"), "localizer"),
        ("AX T2", ("DERIVED", "SECONDARY", "MPR"), "derived"),
        ("Trace", ("DERIVED", "PRIMARY", "DIFFUSION", "TRACEW"), None),
        ("Apparent Diffusion Coefficient (ADC)", ("DERIVED", "PRIMARY"), "derived"),
        ("Screen Save", (), "derived"),
        ("T1 MPRAGE", ("ORIGINAL", "PRIMARY"), None),  # 'mpr' must not match inside 'mprage'
        ("COR MPR", ("ORIGINAL", "PRIMARY"), "derived"),
    ],
)
def test_exclusion(desc, itype, reason):
    assert exclusion_reason(desc, itype, PATTERNS)[0] == reason


def test_orientation_threshold():
    def normal(deg):
        a = np.radians(deg)
        return np.array([0.0, np.sin(a), np.cos(a)])

    assert orientation_label(normal(29.0), 30.0) == "axial"
    assert orientation_label(normal(31.0), 30.0) == "oblique"
    assert orientation_label(np.array([-1.0, 0, 0]), 30.0) == "sagittal"
    assert orientation_label(np.array([0, 1.0, 0]), 30.0) == "coronal"


def test_gap_rules():
    p = np.arange(10) * 2.0
    assert gap_problem(p, 0.1)[0] is None
    assert gap_problem(np.delete(p, [4, 5]), 0.1)[0] == "missing_slices"
    q = p.copy()
    q[5:] += 0.7
    assert gap_problem(q, 0.1)[0] == "irregular_spacing"
    q = p.copy()
    q[5:] += 0.1  # 5% deviation: tolerated
    assert gap_problem(q, 0.1)[0] is None
