"""Write `data/demo.csv`: four hourly demo series of electrical load with a temperature covariate.

Deterministic (seeded numpy generator, fixed decimals): running it again gives a byte-identical file.
See data/README.md for the columns, how the values are made, and where the gaps are.

    python data/make_demo.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SEED = 20240101
START = "2024-01-01 00:00:00"
DAYS = 90
# site: (base load, trend per day, daily amplitude, weekend drop, temperature sensitivity, mean temperature)
SITES = {
    "site_a": (120.0, 0.20, 25.0, 0.15, 3.0, 8.0),
    "site_b": (60.0, -0.05, 10.0, 0.30, 1.5, 12.0),
    "site_c": (300.0, 0.50, 60.0, 0.10, 6.0, 5.0),
    "site_d": (30.0, 0.02, 6.0, 0.40, 0.8, 15.0),
}
# rows removed from the time index and cells emptied, per site (hours from START)
ABSENT_HOURS = {"site_b": [500, 501, 502], "site_c": [1200], "site_d": [1700, 1701]}
EMPTY_LOAD_HOURS = {"site_a": [300, 1500], "site_c": [900]}
EMPTY_TEMPERATURE_HOURS = {"site_b": [1000], "site_d": [200]}


def make_site(rng: np.random.Generator, params: tuple[float, ...], hours: int) -> pd.DataFrame:
    """One site's hourly `load` and `temperature` [hours]: trend, daily and weekly cycles, weather, noise."""
    base, trend, daily, weekend_drop, sensitivity, mean_temperature = params
    t = np.arange(hours)
    hour_of_day, day = t % 24, t / 24.0
    weekend = ((t // 24) % 7) >= 5  # START is a Monday
    weather = np.zeros(hours)  # AR(1) anomaly: unpredictable from load alone, so temperature helps
    shocks = rng.normal(0.0, 0.35, hours)
    for i in range(1, hours):
        weather[i] = 0.97 * weather[i - 1] + shocks[i]
    temperature = mean_temperature + 4.0 * np.sin(2 * np.pi * (hour_of_day - 9) / 24) + weather
    load = (
        base
        + trend * day
        + daily * np.sin(2 * np.pi * (hour_of_day - 6) / 24)
        - weekend_drop * base * weekend
        - sensitivity * (temperature - mean_temperature)  # colder than usual -> more heating load
        + rng.normal(0.0, 0.03 * base, hours)
    )
    return pd.DataFrame({"load": load, "temperature": temperature})


def make_demo() -> pd.DataFrame:
    """Long-format frame: timestamp, series_id, load, temperature; 4 sites x 90 days hourly, with gaps."""
    rng = np.random.default_rng(SEED)
    hours = DAYS * 24
    timestamps = pd.date_range(START, periods=hours, freq="h")
    frames = []
    for site, params in SITES.items():
        frame = make_site(rng, params, hours)
        frame.insert(0, "series_id", site)
        frame.insert(0, "timestamp", timestamps.strftime("%Y-%m-%d %H:%M:%S"))
        frame.loc[EMPTY_LOAD_HOURS.get(site, []), "load"] = np.nan
        frame.loc[EMPTY_TEMPERATURE_HOURS.get(site, []), "temperature"] = np.nan
        frames.append(frame.drop(index=ABSENT_HOURS.get(site, [])))
    return pd.concat(frames, ignore_index=True)


def main() -> None:
    path = Path(__file__).resolve().parent / "demo.csv"
    make_demo().to_csv(path, index=False, float_format="%.3f", lineterminator="\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
