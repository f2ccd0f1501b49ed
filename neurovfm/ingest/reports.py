"""Hospital report CSV: read, join to studies, and scrub each study's own header identifiers.

Scrubbing replaces, case-insensitively and at word boundaries, every known identifier of the
study's patient: name parts, patient IDs (also without leading zeros), accession number, address
(whole and per comma-separated part) and the birth date written in common formats. It removes what
the headers tell us; it is not a general-purpose free-text de-identifier.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

import pandas as pd

REQUIRED = ("accession_number", "report_text")
REDACTED = "[REDACTED]"
MIN_PART_CHARS = 2  # shorter name/address fragments are not scrubbed (they would hit ordinary words)


@dataclass
class Identifiers:
    """The PHI values known for one study, from its headers (and the report row)."""

    names: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    birth_date: str | None = None  # YYYYMMDD
    address: str | None = None

    def merge(self, other: "Identifiers") -> None:
        self.names += [n for n in other.names if n not in self.names]
        self.ids += [i for i in other.ids if i not in self.ids]
        self.birth_date = self.birth_date or other.birth_date
        self.address = self.address or other.address


def identifiers_from_header(rec: dict) -> Identifiers:
    ids = [rec.get("patient_id"), rec.get("accession"), *(rec.get("other_patient_ids") or ())]
    return Identifiers(
        names=[rec["patient_name"]] if rec.get("patient_name") else [],
        ids=[i for i in ids if i],
        birth_date=rec.get("birth_date"),
        address=rec.get("address"),
    )


def date_variants(yyyymmdd: str) -> list[str]:
    """Common spellings of a DICOM date (DA) value."""
    try:
        d = dt.datetime.strptime(yyyymmdd.strip(), "%Y%m%d").date()
    except ValueError:
        return [yyyymmdd] if yyyymmdd and len(yyyymmdd) >= 6 else []
    m, dd, y, yy = d.month, d.day, d.year, d.year % 100
    month, mon = d.strftime("%B"), d.strftime("%b")
    out = {f"{y:04d}{m:02d}{dd:02d}", f"{y}-{m:02d}-{dd:02d}", f"{y}/{m:02d}/{dd:02d}", f"{y}.{m:02d}.{dd:02d}"}
    for a, b in ((m, dd), (dd, m)):
        for fa, fb in ((f"{a:02d}", f"{b:02d}"), (str(a), str(b))):
            for sep in "/-.":
                out.add(f"{fa}{sep}{fb}{sep}{y}")
                out.add(f"{fa}{sep}{fb}{sep}{yy:02d}")
    for mn in (month, mon, mon + "."):
        for day in (str(dd), f"{dd:02d}"):
            out.update({f"{mn} {day}, {y}", f"{mn} {day} {y}", f"{day} {mn} {y}", f"{day}-{mn}-{y}"})
    return sorted(out, key=len, reverse=True)


def _terms(ident: Identifiers) -> list[str]:
    terms: set[str] = set()
    for name in ident.names:
        for part in re.split(r"[\^\s,]+", name):
            if len(part.strip(".")) >= MIN_PART_CHARS:
                terms.add(part.strip("."))
    for i in ident.ids:
        terms.add(i)
        stripped = i.lstrip("0")
        if len(stripped) >= 4 and stripped != i:
            terms.add(stripped)
    if ident.address:
        terms.add(ident.address.strip())
        terms.update(p.strip() for p in re.split(r"[,^\n]+", ident.address) if len(p.strip()) >= 3)
    if ident.birth_date:
        terms.update(date_variants(ident.birth_date))
    return sorted((t for t in terms if t), key=len, reverse=True)


def scrubber(ident: Identifiers):
    """A function text -> text with ``ident``'s values replaced by ``[REDACTED]``."""
    terms = _terms(ident)
    if not terms:
        return lambda text: text
    pattern = re.compile(
        r"(?<![A-Za-z0-9])(?:" + "|".join(re.escape(t) for t in terms) + r")(?![A-Za-z0-9])", re.IGNORECASE
    )
    return lambda text: pattern.sub(REDACTED, text) if text else text


def read_reports(path: str) -> pd.DataFrame:
    """The report CSV as strings (missing values as empty strings); checks the required columns."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"reports CSV lacks required column(s) {missing}; found {list(df.columns)}")
    for col in ("indication", "study_instance_uid", "patient_id"):
        if col not in df.columns:
            df[col] = ""
    return df


def join_reports(reports: pd.DataFrame, by_uid: dict[str, str], by_accession: dict[str, list[str]]):
    """Match report rows to study UIDs: by ``study_instance_uid`` when given, else by accession number.

    Returns ({study_uid: [row index, ...]}, counts) where counts has ``reports_total``,
    ``reports_matched``, ``reports_without_study`` and ``reports_ambiguous`` (an accession number
    shared by several studies).
    """
    matched: dict[str, list[int]] = {}
    counts = {"reports_total": len(reports), "reports_matched": 0, "reports_without_study": 0, "reports_ambiguous": 0}
    for idx, row in reports.iterrows():
        uid = row["study_instance_uid"].strip()
        acc = row["accession_number"].strip()
        if uid and uid in by_uid:
            target = uid
        elif acc and len(by_accession.get(acc, ())) == 1:
            target = by_accession[acc][0]
        elif acc and len(by_accession.get(acc, ())) > 1:
            counts["reports_ambiguous"] += 1
            continue
        else:
            counts["reports_without_study"] += 1
            continue
        matched.setdefault(target, []).append(idx)
        counts["reports_matched"] += 1
    return matched, counts
