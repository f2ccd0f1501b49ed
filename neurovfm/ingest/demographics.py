"""Dates and ages from DICOM header strings."""

from __future__ import annotations

import datetime as dt
import re

from neurovfm.ingest.deid import cap_age

_AGE = re.compile(r"^\s*(\d{1,3})\s*([YMWD])\s*$", re.IGNORECASE)
_UNIT_YEARS = {"Y": 1.0, "M": 1 / 12, "W": 7 / 365.25, "D": 1 / 365.25}


def parse_da(value: str | None) -> dt.date | None:
    """DICOM DA (YYYYMMDD, tolerating YYYY.MM.DD / YYYY-MM-DD) -> date, None when absent or invalid."""
    if not value:
        return None
    digits = re.sub(r"[.\-/\s]", "", value)
    try:
        return dt.datetime.strptime(digits[:8], "%Y%m%d").date()
    except ValueError:
        return None


def age_years(
    patient_age: str | None, birth_date: str | None, study_date: dt.date | None, cap: int = 90
) -> float | None:
    """Age at the study in years: from PatientAge (nnnY/M/W/D), else birth date vs study date; capped."""
    if patient_age:
        m = _AGE.match(patient_age)
        if m:
            value = int(m.group(1)) * _UNIT_YEARS[m.group(2).upper()]
            return cap_age(round(value, 2), cap)
    born = parse_da(birth_date)
    if born and study_date and study_date >= born:
        years = study_date.year - born.year - ((study_date.month, study_date.day) < (born.month, born.day))
        return cap_age(float(years), cap)
    return None
