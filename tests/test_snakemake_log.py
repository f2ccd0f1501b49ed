"""Job times read from a Snakemake log (neurovfm.utils.snakemake_log), on the log format Snakemake 9 prints."""

from __future__ import annotations

import pandas as pd

from neurovfm.utils.snakemake_log import job_times, rule_totals

LOG = """\
Building DAG of jobs...
[Sun Dec  6 10:49:02 2026]
localrule synth:
    output: results/demo/pacs_export
    jobid: 2
    reason: Forced execution
    threads: 2

[Sun Dec  6 10:49:02 2026]
rule preprocess_shard:
    input: x
    jobid: 7
    wildcards: split=train, shard=0
2026-12-06 10:50:00,000 INFO neurovfm: preprocess 3/10
[Sun Dec  6 10:51:30 2026]
Finished jobid: 7 (Rule: preprocess_shard)
1 of 3 steps (33%) done
[Sun Dec  6 11:00:27 2026]
Finished jobid: 2 (Rule: synth)
2 of 3 steps (67%) done

[Sun Dec  6 11:00:28 2026]
localrule probe:
    jobid: 9
    wildcards: encoder=tiny_v1-a.b, modality=ct
"""


def test_jobs_pair_their_start_and_end_and_keep_an_unfinished_one():
    jobs = job_times(LOG).set_index("jobid")
    assert list(jobs.index) == [2, 7, 9]
    assert jobs.loc[2, "rule"] == "synth" and jobs.loc[2, "seconds"] == 11 * 60 + 25
    assert jobs.loc[7, "wildcards"] == "split=train, shard=0" and jobs.loc[7, "seconds"] == 148
    assert jobs.loc[9, "rule"] == "probe" and jobs.loc[9, "wildcards"].startswith("encoder=tiny_v1-a.b")
    assert pd.isna(jobs.loc[9, "end"]) and pd.isna(jobs.loc[9, "seconds"])


def test_rule_totals_span_the_wall_clock_of_each_rule():
    totals = rule_totals(job_times(LOG)).set_index("rule")
    assert totals.loc["synth", "job_seconds"] == 685 and totals.loc["synth", "span_seconds"] == 685
    assert totals.loc["preprocess_shard", "jobs"] == 1
    assert totals.index[0] == "synth"  # longest span first
