"""The tiny HLIP settings and the toy study-report pairs the HLIP tests share.

:class:`PairedToy` is :class:`neurovfm.jepa.toy.ToyVolumes` (half CT, half MRI, one or more volumes per study)
whose report states what its image shows: per axis, whether the head is large or small (the toy heads' radii
vary per volume), so text and image are paired by content, not only by study."""

import json

import numpy as np

from neurovfm.jepa.toy import ToyVolumes

TINY_HLIP = {
    "objective": "hlip",
    "encoder": "tiny",
    "embed_dim": 16,
    "pool_heads": 2,
    "temperature": 0.07,
    "batch_studies": 4,
    "max_volumes": 4,
    "text": {
        "source": "report",
        "path": None,
        "vocab_size": 300,
        "max_tokens": 32,
        "hidden_size": 16,
        "layers": 1,
        "heads": 2,
        "intermediate_size": 32,
    },
}

MARKER = "Quixotrel"  # a word of every report: it must never reach a file


class PairedToy(ToyVolumes):
    """Toy volumes with ``ct_every=2``, so CT and MRI studies alternate."""

    def __init__(self, n_studies: int = 12, volumes_per_study: int = 1, grid=(4, 6, 6), seed: int = 0):
        super().__init__(
            n=n_studies * volumes_per_study,
            grid=grid,
            seed=seed,
            ct_every=2 * volumes_per_study,
            volumes_per_study=volumes_per_study,
        )
        for v in self.volumes:  # one modality per study
            study = int(v["study_id"][5:])
            v["modality"] = "CT" if study % 2 else "MR"

    def finding(self, i: int) -> str:
        """What the first volume of study ``i`` shows: per axis, a large or a small head (the toy's radii)."""
        rng = np.random.default_rng([self.seed, i * (len(self.volumes) // len(self.studies()))])
        radii = rng.uniform(0.6, 0.85, size=3)
        words = [("tall", "short"), ("wide", "narrow"), ("deep", "shallow")]
        return " ".join(w[0] if r > 0.725 else w[1] for r, w in zip(radii, words))

    def studies(self) -> list[str]:
        return sorted({v["study_id"] for v in self.volumes})

    def write_reports(self, path, extra: dict | None = None) -> None:
        """A private reports.jsonl: indication, findings and impression per study (``extra``: more records)."""
        with open(path, "w") as fh:
            for k, sid in enumerate(self.studies()):
                text = (
                    f"INDICATION: headache, seen by Dr {MARKER}.\n\nFINDINGS: The head is {self.finding(k)}. "
                    f"{MARKER} sign absent.\n\nIMPRESSION: {self.finding(k)} head."
                )
                fh.write(json.dumps({"study_id": sid, "modality": "CT", "report_text": text}) + "\n")
            for sid, text in (extra or {}).items():
                fh.write(json.dumps({"study_id": sid, "modality": "CT", "report_text": text}) + "\n")
