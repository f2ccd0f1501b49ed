"""Which series a study contains, as the scanners of a real health system produce them.

A head CT is a scout, an axial soft-tissue series, often a bone-kernel twin of it, sometimes
reformats and a dose page; a brain MRI is a localizer, sagittal T1, axial T2/FLAIR/DWI, an ADC map
and post-contrast T1 when the indication calls for it. Names and image types follow each vendor's
habits. Each series carries the outcome ingest should reach for it (``expected``), so the ingest
stage can be scored against the truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from neurovfm.synth.geometry import Acquisition

# Series descriptions per vendor family. {t} is the slice thickness.
CT_NAMES = {
    "GE": {
        "scout": "Scout",
        "soft": "HEAD {t}mm STND",
        "bone": "HEAD {t}mm BONE",
        "post": "HEAD {t}mm STND +C",
        "cor": "COR REFORMAT 3mm",
        "sag": "SAG REFORMAT 3mm",
        "dose": "Dose Report",
        "short": "VERTEX ADD {t}mm",
    },
    "Siemens": {
        "scout": "Topogram 0.6 T20s",
        "soft": "Head {t} H30s",
        "bone": "Head {t} H70h",
        "post": "Head {t} H30s KM",
        "cor": "Head 3.0 cor REFORMAT",
        "sag": "Head 3.0 sag REFORMAT",
        "dose": "Patient Protocol",
        "short": "Head {t} H30s add",
    },
    "Philips": {
        "scout": "Surview",
        "soft": "Brain {t}mm",
        "bone": "Brain {t}mm Bone",
        "post": "Brain {t}mm Post",
        "cor": "Coronal Reformat",
        "sag": "Sagittal Reformat",
        "dose": "Dose Info",
        "short": "Brain {t}mm extra",
    },
    "Canon": {
        "scout": "Scanogram",
        "soft": "AX BRAIN {t}",
        "bone": "AX BONE {t}",
        "post": "AX BRAIN {t} C+",
        "cor": "COR REFORMAT",
        "sag": "SAG REFORMAT",
        "dose": "Dose Summary",
        "short": "AX ADD {t}",
    },
}
CT_KERNELS = {
    "GE": ("STANDARD", "BONE"),
    "Siemens": ("H30s", "H70h"),
    "Philips": ("UB", "YC"),
    "Canon": ("FC21", "FC30"),
}
MR_NAMES = {
    "GE": {
        "loc": "3-Plane Loc",
        "sag_t1": "Sag T1 FLAIR",
        "t2": "AX T2 FSE",
        "flair": "Ax T2 FLAIR",
        "dwi": "Ax DWI 1000b",
        "adc": "Apparent Diffusion Coefficient (mm2/s)",
        "t1c": "AX T1 POST GAD",
        "cor_t1c": "Cor T1 +C",
        "mprage": "Sag 3D T1 BRAVO",
        "short": "AX DWI repeat",
    },
    "Siemens": {
        "loc": "localizer",
        "sag_t1": "t1_tse_sag",
        "t2": "t2_tse_tra",
        "flair": "t2_tirm_tra_dark-fluid",
        "dwi": "ep2d_diff_3scan_trace",
        "adc": "ep2d_diff_3scan_trace_ADC",
        "t1c": "t1_se_tra_post",
        "cor_t1c": "t1_se_cor_post",
        "mprage": "t1_mprage_sag_p2_iso",
        "short": "t2_tse_tra_rpt",
    },
    "Philips": {
        "loc": "Survey",
        "sag_t1": "sT1W_SE",
        "t2": "T2W_TSE tra",
        "flair": "T2W_FLAIR tra",
        "dwi": "DWI_SSh",
        "adc": "dADC",
        "t1c": "T1W_SE +C tra",
        "cor_t1c": "T1W_SE +C cor",
        "mprage": "3D T1W TFE",
        "short": "T2W_TSE extra",
    },
    "Canon": {
        "loc": "Locator",
        "sag_t1": "Sag T1 SE",
        "t2": "Ax T2 FSE",
        "flair": "Ax FLAIR",
        "dwi": "DWI TRACE",
        "adc": "ADC",
        "t1c": "Ax T1 +C",
        "cor_t1c": "Cor T1 +C",
        "mprage": "Sag 3D T1 MPRAGE",
        "short": "Ax T2 add",
    },
}
# Philips' auto-alignment survey: many images in three planes, not flagged as a localizer.
PHILIPS_SMART = "SmartBrain"
# (TR, TE, TI) in ms per MR sequence; None when not applicable.
MR_TIMING = {
    "t1": (600.0, 12.0, None),
    "t2": (5000.0, 100.0, None),
    "flair": (9000.0, 120.0, 2500.0),
    "dwi": (5000.0, 80.0, None),
    "t1c": (600.0, 12.0, None),
    "mprage": (2300.0, 3.0, 900.0),
    "loc": (8.0, 2.0, None),
}
CONTRAST_AGENTS = ("Gadavist", "Dotarem", "MultiHance", "ProHance")
CT_CONTRAST_AGENTS = ("Omnipaque 350", "Isovue 370", "Visipaque 320")


@dataclass
class SeriesPlan:
    number: int
    description: str
    modality: str  # CT | MR
    sequence: str | None  # render sequence: ct | ct_contrast | t1 | t2 | flair | dwi | t1c; None: not rendered
    acqs: list[Acquisition]  # one per plane; several only for multi-plane localizers
    image_type: tuple[str, ...]
    role: str  # image | localizer | reformat | bone | adc | dose
    source: int | None = None  # bone / adc: number of the series whose volume this one derives from
    kernel: str | None = None
    contrast_agent: str | None = None
    timing: tuple | None = None  # MR (TR, TE, TI)
    b_value: float | None = None
    expected: str = "included"
    file_defects: list[dict] = field(default_factory=list)  # planted per-file problems, see synth.bad_inputs

    @property
    def n_images(self) -> int:
        return sum(a.n_slices for a in self.acqs)


def expected_outcome(s: SeriesPlan, min_slices: int, max_tilt_deg: float) -> str:
    """The ingest verdict for a series, checked in the order ingest is meant to apply the rules."""
    if s.role == "dose":
        return "excluded:non_image_sop_class"
    if "LOCALIZER" in s.image_type:
        return "excluded:localizer"
    if s.image_type[0] == "DERIVED":
        return "excluded:derived"
    if len({a.plane for a in s.acqs}) > 1:
        return "excluded:mixed_orientations"
    if s.n_images < min_slices:
        return "excluded:too_few_slices"
    if any(abs(a.gantry_tilt_deg) > max_tilt_deg for a in s.acqs):
        return "excluded:excessive_tilt"
    return "included"


@dataclass(frozen=True)
class ProtocolParams:
    """Knobs of the protocol generator (from the ``synth`` config section)."""

    mr_matrix: tuple[int, ...] = (192, 256)
    ct_matrix: tuple[int, ...] = (256, 320)
    max_slices: int = 40
    mprage_fraction: float = 0.03
    tilt_fraction: float = 0.2
    tilt_range_deg: tuple[float, float] = (10.0, 25.0)
    bone_fraction: float = 0.6
    reformat_fraction: float = 0.3
    dose_fraction: float = 0.5
    short_series_fraction: float = 0.05
    reverse_fraction: float = 0.2
    force_smart_survey: bool = False  # planted defect: a multi-plane survey not flagged as a localizer
    min_slices: int = 10  # ingest's rule (ingest.min_slices), used only to write the expected outcome
    max_tilt_deg: float = 30.0  # ingest's rule (ingest.max_tilt_deg)

    @classmethod
    def from_cfg(cls, synth_cfg: dict) -> "ProtocolParams":
        kw = {}
        for key, cast in (
            ("mr_matrix", tuple),
            ("ct_matrix", tuple),
            ("max_slices", int),
            ("mprage_fraction", float),
            ("tilt_fraction", float),
            ("tilt_range_deg", tuple),
            ("bone_fraction", float),
            ("reformat_fraction", float),
            ("dose_fraction", float),
            ("short_series_fraction", float),
            ("reverse_fraction", float),
        ):
            if synth_cfg.get(key) is not None:
                kw[key] = cast(synth_cfg[key])
        if synth_cfg.get("ingest_min_slices") is not None:
            kw["min_slices"] = int(synth_cfg["ingest_min_slices"])
        if synth_cfg.get("ingest_max_tilt_deg") is not None:
            kw["max_tilt_deg"] = float(synth_cfg["ingest_max_tilt_deg"])
        return cls(**kw)


class _Builder:
    def __init__(self, rng, params: ProtocolParams, center, extent):
        self.rng, self.p = rng, params
        self.center = np.asarray(center, dtype=float)
        self.extent = np.asarray(extent, dtype=float)  # (LR, AP, SI) mm
        self.series: list[SeriesPlan] = []

    def add(self, **kw) -> SeriesPlan:
        s = SeriesPlan(number=len(self.series) + 1, **kw)
        self.series.append(s)
        return s

    def acq(
        self,
        plane: str,
        matrix_choices,
        fov_mm: float,
        thickness: float,
        gap: float,
        oblique_max=(3, 3, 3),
        tilt: float = 0.0,
        n_slices: int | None = None,
        rect: bool = True,
    ) -> Acquisition:
        r = self.rng
        cols = int(r.choice(matrix_choices))
        rows = int(round(cols * 0.75)) if rect and r.random() < 0.2 else cols
        ps = fov_mm / cols
        spacing = thickness + gap
        axis = {"axial": 2, "coronal": 1, "sagittal": 0}[plane]
        if n_slices is None:
            coverage = self.extent[axis] * (0.85 if plane == "axial" else 0.9)
            n_slices = int(np.clip(round(coverage / spacing), 1, self.p.max_slices))
        obl = tuple(float(r.uniform(-m, m)) for m in oblique_max)
        jitter = r.uniform(-4, 4, size=3)
        center = self.center + jitter
        if plane == "axial":
            center[2] += self.extent[2] * 0.05  # the brain sits above the skull-base centre of the head
        return Acquisition(
            plane=plane,
            rows=rows,
            cols=cols,
            n_slices=n_slices,
            pixel_spacing=(ps, ps),
            slice_thickness=float(thickness),
            spacing_between_slices=float(spacing),
            center_lps=tuple(float(v) for v in center),
            oblique_deg=obl,
            gantry_tilt_deg=float(tilt),
            reverse_order=bool(r.random() < self.p.reverse_fraction),
        )


def plan_series(
    study, rng: np.random.Generator, params: ProtocolParams, head_center_lps, head_extent_mm
) -> list[SeriesPlan]:
    """The series of one study (a ``cohort.StudyPlan``), centred on the rendered head."""
    b = _Builder(rng, params, head_center_lps, head_extent_mm)
    if study.modality == "CT":
        _ct(b, study)
    else:
        _mr(b, study)
    for s in b.series:
        s.expected = expected_outcome(s, params.min_slices, params.max_tilt_deg)
    return b.series


def _fmt(t: float) -> str:
    return f"{t:g}"


def _ct(b: _Builder, study) -> None:
    r, p, names = b.rng, b.p, CT_NAMES[study.vendor]
    soft_k, bone_k = CT_KERNELS[study.vendor]
    if r.random() < 0.9:
        n = int(r.integers(1, 4))
        scout = b.acq("coronal", p.ct_matrix, 500.0, 1.0, 0.0, oblique_max=(0, 0, 0), n_slices=1, rect=False)
        acqs = [scout] + [replace(scout, plane="sagittal", _cache={})] * (n - 1)
        b.add(
            description=names["scout"],
            modality="CT",
            sequence="ct",
            acqs=acqs[:n],
            image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
            role="localizer",
            kernel=soft_k,
        )
    thick = float(r.choice([5.0, 5.0, 5.0, 3.0, 2.5, 1.25]))
    tilt = (
        float(r.uniform(*p.tilt_range_deg)) * (1 if r.random() < 0.5 else -1) if r.random() < p.tilt_fraction else 0.0
    )
    fov = float(r.uniform(220, 250))
    ax = b.acq("axial", p.ct_matrix, fov, thick, 0.0, tilt=tilt, rect=False)
    soft = b.add(
        description=names["soft"].format(t=_fmt(thick)),
        modality="CT",
        sequence="ct",
        acqs=[ax],
        image_type=("ORIGINAL", "PRIMARY", "AXIAL"),
        role="image",
        kernel=soft_k,
    )
    if r.random() < p.bone_fraction:
        b.add(
            description=names["bone"].format(t=_fmt(thick)),
            modality="CT",
            sequence="ct",
            acqs=[ax],
            image_type=("ORIGINAL", "PRIMARY", "AXIAL"),
            role="bone",
            source=soft.number,
            kernel=bone_k,
        )
    if study.contrast:
        post = replace(ax, _cache={})
        b.add(
            description=names["post"].format(t=_fmt(thick)),
            modality="CT",
            sequence="ct_contrast",
            acqs=[post],
            image_type=("ORIGINAL", "PRIMARY", "AXIAL"),
            role="image",
            kernel=soft_k,
            contrast_agent=str(r.choice(CT_CONTRAST_AGENTS)),
        )
    if r.random() < p.reformat_fraction:
        for plane, key in (("coronal", "cor"), ("sagittal", "sag")):
            acq = b.acq(plane, p.ct_matrix, fov, 3.0, 0.0, oblique_max=(0, 0, 0), rect=False)
            b.add(
                description=names[key],
                modality="CT",
                sequence="ct",
                acqs=[acq],
                image_type=("DERIVED", "SECONDARY", "REFORMATTED"),
                role="reformat",
                kernel=soft_k,
            )
    if r.random() < p.short_series_fraction:
        acq = b.acq(
            "axial", p.ct_matrix, fov, thick, 0.0, n_slices=int(r.integers(3, max(4, p.min_slices))), rect=False
        )
        b.add(
            description=names["short"].format(t=_fmt(thick)),
            modality="CT",
            sequence="ct",
            acqs=[acq],
            image_type=("ORIGINAL", "PRIMARY", "AXIAL"),
            role="image",
            kernel=soft_k,
        )
    if r.random() < p.dose_fraction:
        dose = Acquisition(
            plane="axial",
            rows=64,
            cols=96,
            n_slices=1,
            pixel_spacing=(1.0, 1.0),
            slice_thickness=1.0,
            spacing_between_slices=1.0,
        )
        b.add(
            description=names["dose"],
            modality="CT",
            sequence=None,
            acqs=[dose],
            image_type=("DERIVED", "SECONDARY", "OTHER"),
            role="dose",
        )


def _mr(b: _Builder, study) -> None:
    r, p, names = b.rng, b.p, MR_NAMES[study.vendor]
    fov = float(r.uniform(220, 250))
    # localizer: three planes in one series
    if p.force_smart_survey or (study.vendor == "Philips" and r.random() < 0.5):
        per_plane, desc, itype = 5, PHILIPS_SMART, ("ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE")
    else:
        per_plane, desc, itype = 3, names["loc"], ("ORIGINAL", "PRIMARY", "LOCALIZER")
    loc = [
        b.acq(plane, (min(p.mr_matrix),), 280.0, 8.0, 2.0, oblique_max=(0, 0, 0), n_slices=per_plane, rect=False)
        for plane in ("axial", "sagittal", "coronal")
    ]
    b.add(
        description=desc,
        modality="MR",
        sequence="t1",
        acqs=loc,
        image_type=itype,
        role="localizer",
        timing=MR_TIMING["loc"],
    )
    mr_type = (
        ("ORIGINAL", "PRIMARY", "M", "ND", "NORM") if study.vendor == "Siemens" else ("ORIGINAL", "PRIMARY", "OTHER")
    )

    def thickness():
        t = float(r.choice([5.0, 5.0, 4.0, 3.0, 6.0]))
        return t, float(r.choice([0.0, 0.5, 1.0, 1.5])) if t >= 4 else float(r.choice([0.0, 0.3]))

    t, g = thickness()
    b.add(
        description=names["sag_t1"],
        modality="MR",
        sequence="t1",
        acqs=[b.acq("sagittal", p.mr_matrix, fov, t, g, oblique_max=(2, 2, 4))],
        image_type=mr_type,
        role="image",
        timing=MR_TIMING["t1"],
    )
    ax_obl = (float(r.uniform(4, 10)), 2.0, 2.0)  # axial stacks follow the AC-PC line: pitched a few degrees
    for key in ("t2", "flair"):
        t, g = thickness()
        b.add(
            description=names[key],
            modality="MR",
            sequence=key,
            acqs=[b.acq("axial", p.mr_matrix, fov, t, g, oblique_max=ax_obl)],
            image_type=mr_type,
            role="image",
            timing=MR_TIMING[key],
        )
    t, g = thickness()
    dwi_acq = b.acq("axial", (min(p.mr_matrix),), fov, t, g, oblique_max=ax_obl, rect=False)
    dwi = b.add(
        description=names["dwi"],
        modality="MR",
        sequence="dwi",
        acqs=[dwi_acq],
        image_type=("ORIGINAL", "PRIMARY", "DIFFUSION", "TRACEW"),
        role="image",
        timing=MR_TIMING["dwi"],
        b_value=1000.0,
    )
    b.add(
        description=names["adc"],
        modality="MR",
        sequence="dwi",
        acqs=[dwi_acq],
        image_type=("DERIVED", "PRIMARY", "DIFFUSION", "ADC"),
        role="adc",
        source=dwi.number,
        timing=MR_TIMING["dwi"],
    )
    if r.random() < p.short_series_fraction:
        acq = b.acq(
            "axial", p.mr_matrix, fov, 5.0, 1.0, oblique_max=ax_obl, n_slices=int(r.integers(3, max(4, p.min_slices)))
        )
        b.add(
            description=names["short"],
            modality="MR",
            sequence="t2",
            acqs=[acq],
            image_type=mr_type,
            role="image",
            timing=MR_TIMING["t2"],
        )
    if r.random() < p.mprage_fraction:
        acq = b.acq(
            "sagittal",
            p.mr_matrix,
            256.0,
            1.0,
            0.0,
            oblique_max=(1, 1, 1),
            rect=False,
            n_slices=int(round(b.extent[0] * 0.95)),
        )
        b.add(
            description=names["mprage"],
            modality="MR",
            sequence="t1c" if study.contrast else "t1",
            acqs=[acq],
            image_type=mr_type,
            role="image",
            timing=MR_TIMING["mprage"],
            contrast_agent=str(r.choice(CONTRAST_AGENTS)) if study.contrast else None,
        )
    if study.contrast:
        agent = str(r.choice(CONTRAST_AGENTS))
        t, g = thickness()
        b.add(
            description=names["t1c"],
            modality="MR",
            sequence="t1c",
            acqs=[b.acq("axial", p.mr_matrix, fov, t, g, oblique_max=ax_obl)],
            image_type=mr_type,
            role="image",
            timing=MR_TIMING["t1c"],
            contrast_agent=agent,
        )
        if r.random() < 0.5:
            t, g = thickness()
            b.add(
                description=names["cor_t1c"],
                modality="MR",
                sequence="t1c",
                acqs=[b.acq("coronal", p.mr_matrix, fov, t, g, oblique_max=(2, 2, 2))],
                image_type=mr_type,
                role="image",
                timing=MR_TIMING["t1c"],
                contrast_agent=agent,
            )
