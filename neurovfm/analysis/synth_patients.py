"""The synthetic patients behind a run's studies, rebuilt deterministically (no change to the export).

The generator draws each patient's person (head size, brain anatomy) from a random stream keyed by (run seed,
patient index) and each study (pose, atrophy, findings) from one keyed by (run seed, study index), and names the
study with a UID derived from the latter pair. Rebuilding the cohort plan
and the patient therefore recovers exactly the patient that was imaged; as a guard against the generator and this
module drifting apart, every rebuilt finding centre is compared with the ground-truth file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger("neurovfm")


class TruthMismatch(RuntimeError):
    """A rebuilt patient does not reproduce the ground truth the export recorded."""


def truth_by_study_id(truth_dir: str | Path, key: bytes) -> dict[str, dict]:
    """De-identified study id -> ground-truth record (``pacs_export/truth/*.json``)."""
    from neurovfm.labels.evaluate import load_truth

    return load_truth(truth_dir, key)


def rebuild_patients(cfg: dict, study_uids, truth: dict[str, dict] | None = None) -> dict:
    """StudyInstanceUID -> :class:`neurovfm.synth.phantom.Patient` for the requested studies.

    ``truth``: optional UID -> ground-truth record; rebuilt finding centres must equal the recorded ones.
    """
    return dict(iter_patients(cfg, study_uids, truth))


def iter_patients(cfg: dict, study_uids, truth: dict[str, dict] | None = None):
    """Yield ``(StudyInstanceUID, Patient)`` one at a time, in cohort order (a patient's tissue maps take about
    70 MB: callers that visit hundreds of studies keep only the current one). Checks as :func:`rebuild_patients`."""
    from neurovfm.synth import dicom_writer as dw
    from neurovfm.synth.cohort import build_cohort
    from neurovfm.synth.export import _stream, person_of, synth_settings
    from neurovfm.synth.phantom import build_patient

    wanted = set(study_uids)
    seed = int(cfg["seed"])
    seen = set()
    settings = synth_settings(cfg)
    person = (None, None)  # (patient index, person): the last one drawn
    for plan in build_cohort(settings, seed):
        uid = dw.make_uid(seed, plan.index, "study")
        if uid not in wanted:
            continue
        if person[0] != plan.patient.index:
            person = (plan.patient.index, person_of(plan.patient, seed, settings))
        patient = build_patient(
            _stream(seed, plan.index, "patient"),
            plan.age,
            plan.patient.sex,
            [dict(f) for f in plan.findings],
            person=person[1],
        )
        if truth is not None and uid in truth:
            got = [f["center_lps"] for f in patient.findings]
            want = [f["center_lps"] for f in truth[uid]["findings"]]
            if len(got) != len(want) or not np.allclose(
                np.asarray(got, float).reshape(-1, 3), np.asarray(want, float).reshape(-1, 3), atol=0.11
            ):
                raise TruthMismatch(f"study {uid}: rebuilt findings {got} differ from the truth file {want}")
        seen.add(uid)
        yield uid, patient
    missing = wanted - seen
    if missing:
        raise TruthMismatch(
            f"{len(missing)} studies are not in this configuration's cohort (e.g. {sorted(missing)[0]})"
        )


def iter_poses(cfg: dict, study_uids):
    """Yield ``(StudyInstanceUID, native mm -> scanner LPS 4 x 4)`` for the requested studies: the head size is the
    first draw of the person's stream and the placement the first of the study's
    (:func:`neurovfm.synth.phantom.draw_head_size`, :func:`~neurovfm.synth.phantom.draw_placement`), so no tissue
    map is built."""
    from neurovfm.synth import dicom_writer as dw
    from neurovfm.synth.cohort import build_cohort
    from neurovfm.synth.export import _stream, synth_settings
    from neurovfm.synth.phantom import draw_head_size, draw_placement

    wanted = set(study_uids)
    seed = int(cfg["seed"])
    settings = synth_settings(cfg)
    for plan in build_cohort(settings, seed):
        uid = dw.make_uid(seed, plan.index, "study")
        if uid in wanted:
            scale = draw_head_size(_stream(seed, plan.patient.index, "person"), plan.patient.sex)
            yield uid, draw_placement(_stream(seed, plan.index, "patient"), scale)[0]
