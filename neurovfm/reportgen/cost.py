"""Cost and energy per 100 studies (Extended Data Fig. 16c): NeuroVFM from seconds per study on one rented
GPU instance, frontier models from token counts and batch prices; every assumption is a column of the table."""

from __future__ import annotations

import pandas as pd

STUDIES = 100


def gpu_row(model: str, seconds_per_study: float, source: str, c: dict) -> dict:
    hours = STUDIES * seconds_per_study / 3600.0
    kwh = hours * float(c["gpu_power_w"]) / 1000.0
    return {
        "model": model,
        "source": source,
        "seconds_per_study": seconds_per_study,
        "hardware": c["gpu"],
        "usd_per_hour": c["usd_per_hour"],
        "gpu_power_w": c["gpu_power_w"],
        "grid_kgco2e_per_kwh": c["grid_kgco2e_per_kwh"],
        "usd_per_100": hours * float(c["usd_per_hour"]),
        "kwh_per_100": kwh,
        "gco2e_per_100": kwh * float(c["grid_kgco2e_per_kwh"]) * 1000.0,
    }


def frontier_row(model: str, f: dict, c: dict) -> dict:
    usd = STUDIES * (f["input_tokens"] * f["usd_per_m_input"] + f["output_tokens"] * f["usd_per_m_output"]) / 1e6
    wh = f["wh_per_query"]
    kwh = None if wh is None else STUDIES * float(wh) / 1000.0
    return {
        "model": model,
        "source": "batch price x tokens per study",
        "input_tokens": f["input_tokens"],
        "output_tokens": f["output_tokens"],
        "usd_per_m_input": f["usd_per_m_input"],
        "usd_per_m_output": f["usd_per_m_output"],
        "wh_per_query": wh,
        "grid_kgco2e_per_kwh": c["grid_kgco2e_per_kwh"],
        "usd_per_100": usd,
        "kwh_per_100": kwh,
        "gco2e_per_100": None if kwh is None else kwh * float(c["grid_kgco2e_per_kwh"]) * 1000.0,
    }


def cost_table(c: dict, measured: dict[str, float]) -> pd.DataFrame:
    """``measured``: {model: mean seconds per study measured in this run (on this run's hardware)}."""
    rows = [gpu_row("NeuroVFM", float(c["paper_seconds_per_study"]), "paper's inference time", c)]
    rows += [gpu_row(m, s, "measured in this run, priced as the instance above", c) for m, s in measured.items()]
    rows += [frontier_row(m, f, c) for m, f in c["frontier"].items()]
    return pd.DataFrame(rows)
