"""What forecaster knows of a frequency (a pandas offset alias such as `h`, `15min`, `D`, `W-SUN`, `MS`), in one
place: its seasonal periods (seasonal naive, MASE's scale, MSTL, `tune`'s lookbacks), the window `init` suggests,
the calendar features `init` writes, and how a message names it. The frequency itself is inferred from the data by
`forecaster.data.validate.infer_freq`.
"""

from __future__ import annotations

import pandas as pd
from pandas.tseries.frequencies import to_offset

_HOUR, _DAY = pd.Timedelta(hours=1), pd.Timedelta(days=1)
_SEASON_BY_RULE = {"W": 52, "B": 5, "C": 5, "SMS": 24, "SME": 24, "MS": 12, "ME": 12, "BMS": 12, "BME": 12,
                   "QS": 4, "QE": 4, "BQS": 4, "BQE": 4}
# calendar frequencies (one step of each): lookback, horizon, why
_CALENDAR_WINDOWS = {
    "B": (60, 10, "business days: twelve weeks of history, two weeks ahead"),
    "W": (52, 13, "weekly data: one year of history, one quarter ahead"),
    "MS": (36, 12, "monthly data: three years of history, one year ahead"),
    "ME": (36, 12, "monthly data: three years of history, one year ahead"),
    "QS": (16, 8, "quarterly data: four years of history, two years ahead (as M4 Quarterly)"),
    "QE": (16, 8, "quarterly data: four years of history, two years ahead (as M4 Quarterly)"),
    "YS": (12, 6, "yearly data: twelve years of history, six ahead (as M4 Yearly)"),
    "YE": (12, 6, "yearly data: twelve years of history, six ahead (as M4 Yearly)"),
}


def season_length(freq: str) -> int:
    """The seasonal period of a frequency: steps per day below a day (hourly 24, 15-minute 96), daily 7,
    weekly 52, monthly 12, quarterly 4, business days 5, anything else 1."""
    offset = to_offset(freq)
    try:
        step = pd.Timedelta(offset)
    except ValueError:  # calendar offsets (weeks, months, ...) have no fixed length
        season = _SEASON_BY_RULE.get(offset.rule_code.split("-")[0], 1)
        return season // offset.n if season % offset.n == 0 else 1
    if step < _DAY:
        return _DAY // step if _DAY % step == pd.Timedelta(0) else 1
    return {_DAY: 7, 7 * _DAY: 52}.get(step, 1)


def seasonalities(freq: str, main: int | None = None) -> list[int]:
    """Every seasonal period of a frequency, shortest first: below a day, the day and the week (hourly 24 and
    168); daily, the week and the year (7, 365); else the one `season_length`. `main` (a configured
    model.season_length) comes first when given."""
    season = season_length(freq)
    try:
        step = pd.Timedelta(to_offset(freq))
    except ValueError:
        periods = [season]
    else:
        periods = [season, 7 * season] if step < _DAY and season > 1 else [7, 365] if step == _DAY else [season]
    if main is not None and main not in periods:
        periods = [main, *periods]
    return sorted({p for p in periods if p > 1}) or [1]


def suggest_window(freq: str) -> tuple[int, int, str]:
    """(lookback, horizon, why) for a pandas frequency alias, before fitting them to the data's length."""
    offset = to_offset(freq)
    try:
        step = pd.Timedelta(offset)
    except ValueError:  # calendar frequencies (weeks, months...) have no fixed length
        rule = offset.rule_code.split("-")[0]
        if offset.n == 1 and rule in _CALENDAR_WINDOWS:
            return _CALENDAR_WINDOWS[rule]
        return 48, 12, f"'{freq}' steps fit no usual calendar pattern: 48 steps of history, 12 ahead"
    if step == _HOUR:
        return 168, 24, "hourly data: one week of history, one day ahead"
    if step == _DAY:
        return 56, 14, "daily data: eight weeks of history, two weeks ahead"
    if step < _DAY and _DAY % step == pd.Timedelta(0):
        per_day = _DAY // step
        if step > _HOUR:
            return 7 * per_day, per_day, f"{describe(freq)} data: one week of history, one day ahead"
        horizon = min(per_day, 96)
        ahead = "one day" if horizon == per_day else f"{(step * horizon) / _HOUR:g} hours"
        return 4 * horizon, horizon, f"{describe(freq)} data: {ahead} ahead, four times as much history"
    return 48, 12, f"'{freq}' steps fit no usual calendar pattern: 48 steps of history, 12 ahead"


def calendar_for(freq: str) -> tuple[list[str], str]:
    """(the calendar features `init` writes for a frequency, why): the cycles a step of it can see."""
    offset = to_offset(freq)
    try:
        step = pd.Timedelta(offset)
    except ValueError:
        rule = offset.rule_code.split("-")[0]
        if rule == "W":
            return ["dayofyear"], "the yearly cycle as sin/cos features"
        if rule in ("MS", "ME"):
            return ["month"], "the yearly cycle as sin/cos features"
        if rule == "B":
            return ["weekday"], "the weekly cycle as sin/cos features"
        return [], ""
    if step < _DAY:
        return ["hour", "weekday"], "daily and weekly cycles as sin/cos features"
    if step == _DAY:
        return ["weekday"], "the weekly cycle as sin/cos features"
    return [], ""


def describe(freq: str) -> str:
    """'hourly', 'daily', 'weekly', ... or '15-minute', '2-hour' for other steps."""
    offset = to_offset(freq)
    rule = offset.rule_code.split("-")[0]
    words = {"h": "hour", "min": "minute", "s": "second", "D": "day", "W": "week", "B": "business day",
             "MS": "month", "ME": "month", "QS": "quarter", "QE": "quarter", "YS": "year", "YE": "year"}
    if rule not in words:
        return f"'{freq}'"
    if offset.n == 1:
        adjectives = {"day": "daily", "business day": "business-daily", "minute": "one-minute",
                      "second": "one-second"}
        return adjectives.get(words[rule], f"{words[rule]}ly")
    return f"{offset.n}-{words[rule]}"
