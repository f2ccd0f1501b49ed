"""Wall time of a whole workflow run and where it went, from the run's Snakemake log.

    /usr/bin/time -v snakemake --profile profiles/local all > run.log 2>&1
    python benchmarks/dag_walltime.py run.log benchmarks/results/dag_walltime/demo

Writes ``demo_jobs.csv`` (one row per job: rule, wildcards, start, end, seconds), ``demo_rules.csv`` (per rule: jobs,
summed job seconds, span from its first start to its last end) and a timeline figure (``demo_timeline.png`` /
``.pdf``: one bar per job on the wall clock), and prints the wall time (first job start to last job end) and the
rules that took longest.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from neurovfm.utils.atomic import write_csv
from neurovfm.utils.snakemake_log import read_job_times, rule_totals


def timeline(jobs, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = jobs["start"].min()
    done = jobs.dropna(subset=["end"])
    rules = list(dict.fromkeys(done["rule"]))
    colours = {r: plt.cm.tab20(i % 20) for i, r in enumerate(rules)}
    fig, ax = plt.subplots(figsize=(10, max(3.0, 0.16 * len(done) + 1)))
    for y, (_, j) in enumerate(done.iterrows()):
        start = (j["start"] - t0).total_seconds() / 60
        ax.barh(y, max(j["seconds"] / 60, 0.02), left=start, color=colours[j["rule"]], height=0.8)
        ax.text(start + j["seconds"] / 60 + 0.1, y, j["rule"], va="center", fontsize=6)
    ax.set_yticks([])
    ax.invert_yaxis()
    ax.set_xlabel("minutes since the first job started")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    for ext in (".png", ".pdf"):
        fig.savefig(path.with_suffix(ext), dpi=150)
    plt.close(fig)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("log", type=Path, help="the run's Snakemake log (stdout and stderr)")
    ap.add_argument("out_prefix", type=Path, help="output path prefix, e.g. benchmarks/results/dag_walltime/demo")
    ap.add_argument("--title", default="")
    args = ap.parse_args(argv)
    jobs = read_job_times(args.log)
    if jobs.empty:
        raise SystemExit(f"{args.log}: no Snakemake job lines found")
    rules = rule_totals(jobs)
    args.out_prefix.parent.mkdir(parents=True, exist_ok=True)
    name = args.out_prefix.name
    write_csv(args.out_prefix.with_name(f"{name}_jobs.csv"), jobs)
    write_csv(args.out_prefix.with_name(f"{name}_rules.csv"), rules)
    wall = (jobs["end"].max() - jobs["start"].min()).total_seconds()
    unfinished = int(jobs["end"].isna().sum())
    timeline(jobs, args.out_prefix.with_name(f"{name}_timeline.png"), args.title or f"{name}: {wall / 60:.1f} min")
    print(f"jobs {len(jobs)} ({unfinished} unfinished); wall {wall:.0f} s = {wall / 60:.1f} min")
    print(f"summed job seconds {np.nansum(jobs['seconds']):.0f} s (2 cores: {np.nansum(jobs['seconds']) / 2:.0f} s)")
    print(rules.head(15)[["rule", "jobs", "job_seconds", "span_seconds"]].round(1).to_string(index=False))


if __name__ == "__main__":
    main()
