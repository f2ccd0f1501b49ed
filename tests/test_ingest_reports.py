"""Report join and identifier scrubbing; ages from headers, capped."""

from __future__ import annotations

import datetime as dt
import re

import pandas as pd
import pytest

from neurovfm.ingest.demographics import age_years, parse_da
from neurovfm.ingest.reports import Identifiers, date_variants, join_reports, read_reports, scrubber


def test_scrub_identifiers():
    ident = Identifiers(
        names=["O'Brien^Mary Ann^K"],
        ids=["0012345", "A998877"],
        birth_date="19480704",
        address="5 Oak Lane, Dexter, MI",
    )
    scrub = scrubber(ident)
    text = (
        "MARY ANN O'Brien, MRN 12345 (0012345), acc A998877, DOB 07/04/1948 / 1948-07-04 / July 4, 1948, "
        "of 5 Oak Lane, Dexter. Maryland transfer. Ann Arbor. Chronic small vessel disease."
    )
    out = scrub(text)
    for bad in (
        "MARY",
        "O'Brien",
        "12345",
        "A998877",
        "07/04/1948",
        "1948-07-04",
        "July 4, 1948",
        "Oak Lane",
        "Dexter",
    ):
        assert not re.search(rf"(?<![a-z0-9]){re.escape(bad.lower())}(?![a-z0-9])", out.lower()), bad
    assert "Maryland" in out  # word boundaries: a name part inside a longer word stays
    assert "Chronic small vessel disease." in out
    assert out.count("[REDACTED]") >= 9


def test_date_variants_cover_common_formats():
    v = set(date_variants("19500307"))
    assert {"19500307", "1950-03-07", "03/07/1950", "3/7/1950", "07.03.1950", "March 7, 1950", "7 Mar 1950"} <= v


def test_join_by_uid_and_accession(tmp_path):
    pd.DataFrame(
        [
            {"accession_number": "A1", "report_text": "r1", "extra": "x"},
            {"accession_number": "A2", "report_text": "r2", "study_instance_uid": "1.2.3"},
            {"accession_number": "A9", "report_text": "orphan"},
            {"accession_number": "DUP", "report_text": "ambiguous"},
        ]
    ).to_csv(tmp_path / "r.csv", index=False)
    df = read_reports(str(tmp_path / "r.csv"))
    matched, counts = join_reports(df, {"1.2.3": None, "9.9": None}, {"A1": ["9.9"], "DUP": ["x", "y"]})
    assert matched == {"9.9": [0], "1.2.3": [1]}
    assert counts == {"reports_total": 4, "reports_matched": 2, "reports_without_study": 1, "reports_ambiguous": 1}
    pd.DataFrame([{"accession_number": "A1"}]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match="report_text"):
        read_reports(str(tmp_path / "bad.csv"))


@pytest.mark.parametrize(
    "age,birth,date,expected",
    [
        ("045Y", None, None, 45.0),
        ("006M", None, None, 0.5),
        ("104Y", None, None, 90.0),
        ("002W", None, None, round(14 / 365.25, 2)),
        (None, "19300615", "20200614", 89.0),
        (None, "19300615", "20200615", 90.0),
        (None, "19200101", "20200101", 90.0),
        ("junk", None, None, None),
        (None, "bad", "20200101", None),
    ],
)
def test_age(age, birth, date, expected):
    got = age_years(age, birth, parse_da(date), cap=90)
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_parse_da():
    assert parse_da("2023.06.01") == dt.date(2023, 6, 1)
    assert parse_da("20231301") is None and parse_da("") is None
