"""Where a Snakemake run spent its time: job start and end times read from Snakemake's own log.

Snakemake prints a timestamp line ``[Sun Dec  6 10:49:02 2026]`` before each job it starts (followed by
``rule NAME:`` or ``localrule NAME:`` and an indented ``jobid: N``, and ``wildcards: ...`` when it has any) and
before each job it finishes (``Finished jobid: N (Rule: NAME)``). :func:`job_times` pairs them into one row per job;
jobs that started but never finished (a killed or failed run) keep an empty end.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pandas as pd

_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]\s*$")
_START = re.compile(r"^(?:local)?(?:rule|checkpoint) ([\w.-]+):\s*$")
_JOBID = re.compile(r"^\s+jobid: (\d+)\s*$")
_WILDCARDS = re.compile(r"^\s+wildcards: (.*)$")
_FINISH = re.compile(r"^Finished jobid: (\d+) \(Rule: ([\w.-]+)\)")


def _stamp(text: str) -> datetime:
    return datetime.strptime(" ".join(text.split()), "%a %b %d %H:%M:%S %Y")


def job_times(log_text: str) -> pd.DataFrame:
    """One row per job: ``jobid``, ``rule``, ``wildcards``, ``start``, ``end`` (NaT if it never finished) and
    ``seconds``; in start order."""
    jobs: dict[int, dict] = {}
    stamp, pending = None, None
    for line in log_text.splitlines():
        if m := _STAMP.match(line):
            stamp, pending = _stamp(m.group(1)), None
        elif (m := _START.match(line)) and stamp is not None:
            pending = {"rule": m.group(1), "start": stamp, "wildcards": ""}
        elif (m := _JOBID.match(line)) and pending is not None:
            jobs[int(m.group(1))] = pending
        elif (m := _WILDCARDS.match(line)) and pending is not None:
            pending["wildcards"] = m.group(1).strip()
        elif (m := _FINISH.match(line)) and stamp is not None:
            job = jobs.setdefault(int(m.group(1)), {"rule": m.group(2), "start": pd.NaT, "wildcards": ""})
            job["end"] = stamp
    rows = [{"jobid": k, **v} for k, v in jobs.items()]
    df = pd.DataFrame(rows, columns=["jobid", "rule", "wildcards", "start", "end"])
    df["start"], df["end"] = pd.to_datetime(df["start"]), pd.to_datetime(df["end"])
    df["seconds"] = (df["end"] - df["start"]).dt.total_seconds()
    return df.sort_values(["start", "jobid"]).reset_index(drop=True)


def read_job_times(path: str | Path) -> pd.DataFrame:
    return job_times(Path(path).read_text(encoding="utf-8", errors="replace"))


def rule_totals(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per rule: jobs, summed job seconds, the first start, the last end and the span between them (the rule's share
    of the wall clock), longest span first."""
    g = jobs.groupby("rule")
    out = pd.DataFrame(
        {
            "jobs": g.size(),
            "job_seconds": g["seconds"].sum(),
            "first_start": g["start"].min(),
            "last_end": g["end"].max(),
        }
    )
    out["span_seconds"] = (out["last_end"] - out["first_start"]).dt.total_seconds()
    return out.sort_values("span_seconds", ascending=False).reset_index()
