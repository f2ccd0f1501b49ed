"""Assemble the files of one DICOM series into checked, sorted volumes (or ledger rejections).

Order of checks: duplicate SOP instances (file level), localizer/derived, missing geometry,
mixed orientations, inconsistent dimensions, shared positions (split into stacks by a
distinguishing tag, or reject), then per stack: too few slices, gaps, tilt.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from neurovfm.ingest import geometry as geo
from neurovfm.ingest.classify import exclusion_reason

# record key -> DICOM keyword, in the order they are tried to tell stacks apart
STACK_TAGS = (
    ("echo_numbers", "EchoNumbers"),
    ("diffusion_b_value", "DiffusionBValue"),
    ("temporal_position", "TemporalPositionIdentifier"),
    ("acquisition_number", "AcquisitionNumber"),
)


@dataclass(slots=True)
class Slice:
    path: str
    sop_instance_uid: str
    ipp: tuple | None
    iop: tuple | None
    pixel_spacing: tuple | None
    rows: int | None
    cols: int | None
    slice_thickness: float | None
    instance_number: int | None
    stack_values: tuple  # values of STACK_TAGS, same order

    @classmethod
    def from_record(cls, rec: dict) -> "Slice":
        return cls(
            rec["path"],
            rec["sop_instance_uid"],
            rec.get("ipp"),
            rec.get("iop"),
            rec.get("pixel_spacing"),
            rec.get("rows"),
            rec.get("cols"),
            rec.get("slice_thickness"),
            rec.get("instance_number"),
            tuple(rec.get(k) for k, _ in STACK_TAGS),
        )


@dataclass
class Volume:
    stack: str  # "" when the series is one stack, else "<Keyword>=<value>"
    paths: list[str]  # sorted along the slice normal
    rows: int
    cols: int
    pixel_spacing: tuple[float, float]  # (row spacing, column spacing)
    slice_spacing: float  # median distance between planes along the normal
    slice_thickness: float | None
    tilt_deg: float
    affine: np.ndarray
    normal: np.ndarray

    @property
    def n_slices(self) -> int:
        return len(self.paths)


@dataclass
class Rejection:
    unit: str  # file | series
    reason: str
    paths: list[str]
    detail: str
    stack: str = ""


@dataclass
class SeriesParams:
    min_slices: int = 10
    max_tilt_deg: float = 30.0
    spacing_tolerance: float = 0.1
    exclude_description_patterns: tuple = ()
    iop_tolerance: float = 0.01  # cosine difference still counted as the same orientation
    position_tolerance_mm: float = 0.01  # slice origins closer than this along the normal coincide
    spacing_rel_tolerance: float = 1e-3  # PixelSpacing differences still counted as equal

    @classmethod
    def from_config(cls, ingest_cfg: dict) -> "SeriesParams":
        keys = cls.__dataclass_fields__.keys()
        kw = {k: ingest_cfg[k] for k in keys if k in ingest_cfg and ingest_cfg[k] is not None}
        if "exclude_description_patterns" in kw:
            kw["exclude_description_patterns"] = tuple(kw["exclude_description_patterns"])
        return cls(**kw)


@dataclass
class SeriesResult:
    volumes: list[Volume] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


def _has_geometry(s: Slice) -> bool:
    return (
        s.ipp is not None
        and len(s.ipp) == 3
        and s.iop is not None
        and len(s.iop) == 6
        and s.pixel_spacing is not None
        and len(s.pixel_spacing) == 2
        and bool(s.rows)
        and bool(s.cols)
    )


def _split_stacks(slices: list[Slice], normal: np.ndarray, tol_mm: float):
    """[(label, slices)] or a detail string when shared positions cannot be told apart."""
    proj = geo.project([s.ipp for s in slices], normal)
    labels = geo.cluster_positions(proj, tol_mm)
    counts = np.bincount(labels)
    if counts.max() == 1:
        return [("", slices)]
    depth = int(counts.max())
    groups: dict[int, list[Slice]] = {}
    for s, lab in zip(slices, labels):
        groups.setdefault(int(lab), []).append(s)
    for t, (key, keyword) in enumerate(STACK_TAGS):
        values = {s.stack_values[t] for s in slices}
        if None in values or len(values) != depth:
            continue
        if all(len({s.stack_values[t] for s in g}) == len(g) for g in groups.values()):
            stacks: dict = {}
            for s in slices:
                stacks.setdefault(s.stack_values[t], []).append(s)
            return [(f"{keyword}={_fmt(v)}", stacks[v]) for v in sorted(stacks, key=_sort_key)]
    return (
        f"{int((counts > 1).sum())} position(s) hold up to {depth} images and no tag "
        f"({', '.join(k for _, k in STACK_TAGS)}) tells them apart"
    )


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _sort_key(v):
    try:
        return (0, float(v), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(v))


def _stack_volume(label: str, slices: list[Slice], iop, normal, p: SeriesParams):
    if len(slices) < p.min_slices:
        return Rejection(
            "series",
            "too_few_slices",
            [s.path for s in slices],
            f"{len(slices)} image(s), fewer than {p.min_slices}",
            label,
        )
    proj = geo.project([s.ipp for s in slices], normal)
    order = np.lexsort((np.array([s.path for s in slices]), proj))
    slices = [slices[i] for i in order]
    reason, detail, median_gap = geo.gap_problem(proj[order], p.spacing_tolerance)
    if reason:
        return Rejection("series", reason, [s.path for s in slices], detail, label)
    ipps = [s.ipp for s in slices]
    tilt = geo.tilt_deg(ipps, normal)
    if tilt > p.max_tilt_deg:
        return Rejection(
            "series",
            "excessive_tilt",
            [s.path for s in slices],
            f"gantry tilt {tilt:.1f} deg above {p.max_tilt_deg:g}",
            label,
        )
    thick = [s.slice_thickness for s in slices if s.slice_thickness]
    first = slices[0]
    return Volume(
        label,
        [s.path for s in slices],
        int(first.rows),
        int(first.cols),
        (float(first.pixel_spacing[0]), float(first.pixel_spacing[1])),
        float(median_gap),
        float(np.median(thick)) if thick else None,
        tilt,
        geo.affine_lps(iop, first.pixel_spacing, ipps),
        normal,
    )


def assemble_series(files: list[Slice], description: str | None, image_type, p: SeriesParams) -> SeriesResult:
    """Volumes and rejections of one series, from the header data of its files."""
    out = SeriesResult()
    seen: dict[str, Slice] = {}
    for s in sorted(files, key=lambda f: f.path):
        if s.sop_instance_uid in seen:
            out.rejections.append(
                Rejection("file", "duplicate_instance", [s.path], "same SOPInstanceUID as another file of the series")
            )
        else:
            seen[s.sop_instance_uid] = s
    slices = list(seen.values())
    paths = [s.path for s in slices]

    reason, detail = exclusion_reason(description, image_type, p.exclude_description_patterns)
    if reason:
        out.rejections.append(Rejection("series", reason, paths, detail))
        return out
    lacking = [s for s in slices if not _has_geometry(s)]
    if lacking:
        out.rejections.append(
            Rejection(
                "series", "missing_geometry", paths, f"{len(lacking)} image(s) lack position/orientation/spacing/matrix"
            )
        )
        return out
    if not geo.orientations_agree([s.iop for s in slices], p.iop_tolerance):
        out.rejections.append(
            Rejection("series", "mixed_orientations", paths, "images of the series have different orientations")
        )
        return out
    dims = {(s.rows, s.cols) for s in slices}
    sp = np.array([s.pixel_spacing for s in slices], dtype=float)
    if len(dims) > 1 or np.any(np.abs(sp - sp[0]) > p.spacing_rel_tolerance * np.abs(sp[0]).max()):
        out.rejections.append(
            Rejection(
                "series",
                "inconsistent_dimensions",
                paths,
                f"{len(dims)} matrix size(s), pixel spacing range {sp.min():.4g}-{sp.max():.4g} mm",
            )
        )
        return out
    try:
        _, _, normal = geo.cosines(slices[0].iop)
    except ValueError:
        out.rejections.append(
            Rejection(
                "series",
                "missing_geometry",
                paths,
                "ImageOrientationPatient unusable (not 6 values, or a zero-length direction)",
            )
        )
        return out
    stacks = _split_stacks(slices, normal, p.position_tolerance_mm)
    if isinstance(stacks, str):
        out.rejections.append(Rejection("series", "duplicate_positions", paths, stacks))
        return out
    for label, members in stacks:
        res = _stack_volume(label, members, slices[0].iop, normal, p)
        (out.rejections if isinstance(res, Rejection) else out.volumes).append(res)
    return out
