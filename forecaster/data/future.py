"""Known-future covariates at forecast time: the values of `data.future_covariates` over each series' horizon.

A model trained with future covariates (tomorrow's load forecast, next week's prices and promotions) needs their
values at the `horizon` timestamps after each series' last observed target. They come in the history itself, as
rows after that last observation whose targets are empty: the one-table convention, which every path that takes a
frame understands (batch prediction, the pyfunc model, `mlflow models serve`, Spark). A separate file
(`predict.future`, `forecaster predict --future FILE`) holds the same rows without the targets; `append_future`
puts them under the history, so both ways are one.

A `scenario` column in the future rows gives several versions of the future (what-if): each is forecast on its own
(`scenarios`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecaster.config import DataConfig
from forecaster.data.features import future_grid
from forecaster.data.io import with_series_key
from forecaster.data.timestamps import Clock, read_timestamps
from forecaster.data.validate import SINGLE_SERIES_ID, check_columns
from forecaster.errors import DataError

SCENARIO = "scenario"  # the column of the future rows that names a version of the future
SHOWN = 5  # series named in a message; the rest are counted


def split_future_rows(history: pd.DataFrame, data: DataConfig, source: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the rows up to each series' last row with a target, the rows after it): what happened, and the known
    future. A series with no target at all keeps every row in the first part, where it is reported as the
    history of any other series with nothing to learn from would be."""
    if not len(history):
        return history, history.iloc[:0]
    observed = history[data.targets].notna().to_numpy().any(axis=1)  # [n]
    keys = _series_keys(history, data)
    stamps, _ = read_timestamps(history[data.timestamp], data.timestamp, source, data.timezone,
                                pd.factorize(keys)[0])  # [n] int64 ns
    floor = np.iinfo(np.int64).min
    last = pd.Series(np.where(observed, stamps, floor)).groupby(keys.to_numpy()).transform("max").to_numpy()
    after = (stamps > last) & (last > floor)  # [n]
    return history[~after], history[after]


def append_future(history: pd.DataFrame, future: pd.DataFrame, data: DataConfig, source: str) -> pd.DataFrame:
    """`history` with the rows of a future file under it, their targets empty: the one-table convention."""
    needed = DataConfig(timestamp=data.timestamp, series_id=data.series_id, target=data.targets[0],
                        future_covariates=data.future_covariates)
    check_columns(future.assign(**{data.targets[0]: np.nan}), needed, source)
    columns = [data.timestamp, *data.key_columns, *data.future_covariates,
               *([SCENARIO] if SCENARIO in future else [])]
    rows = with_series_key(future[columns], data, source).assign(**{name: np.nan for name in data.targets})
    return pd.concat([history, rows], ignore_index=True)


def scenarios(future: pd.DataFrame) -> list[str | None]:
    """The scenarios the future rows hold, in order of appearance; [None] when they have no scenario column."""
    if SCENARIO not in future:
        return [None]
    names = future[SCENARIO]
    if names.isna().any():
        raise DataError(f"the future rows' column '{SCENARIO}' is empty in row {int(np.argmax(names.isna()))}; name "
                        f"the scenario of every row, or drop the column for a single future")
    return [str(name) for name in pd.unique(names.astype(str))]


def future_values(future: pd.DataFrame, data: DataConfig, series_ids: list[str], last: np.ndarray, freq: str,
                  horizon: int, source: str, clock: Clock = Clock()) -> tuple[np.ndarray, dict[str, str]]:
    """[S, H, Cf] float64: `data.future_covariates` at the `horizon` grid steps after each series' last
    timestamp (`last` [S], datetime64 on the history's `clock`), read from the rows of `future`; and {series id:
    what is missing} for the series that lack a step or a value (their rows of the array are NaN there)."""
    grid = future_grid(last, freq, horizon).astype("datetime64[ns]").view(np.int64)  # [S, H]
    columns = data.future_covariates
    keys = _series_keys(future, data)
    stamps = (clock.read(future[data.timestamp], data.timestamp, source, pd.factorize(keys)[0]) if len(future)
              else np.empty(0, np.int64))
    values = future[columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)  # [n, Cf]
    _refuse_text(future, columns, values, source)
    index = pd.MultiIndex.from_arrays([keys.to_numpy(), stamps])
    if index.has_duplicates:
        series, stamp = index[index.duplicated()][0]
        raise DataError(f"{source}: series '{series}' has two future rows for {clock.aware([stamp])[0]}; keep one "
                        f"(with a '{SCENARIO}' column, one per scenario)")
    wanted = pd.MultiIndex.from_arrays([np.repeat(series_ids, horizon), grid.reshape(-1)])
    found = pd.DataFrame(values, index=index).reindex(wanted).to_numpy(dtype=np.float64)  # [S*H, Cf]
    found = found.reshape(len(series_ids), horizon, len(columns))  # [S, H, Cf]
    missing = np.isnan(found).any(axis=2)  # [S, H]
    reasons = {}
    for index_ in np.flatnonzero(missing.any(axis=1)):
        steps = np.flatnonzero(missing[index_])
        first = ", ".join(str(stamp) for stamp in clock.aware(grid[index_, steps[:3]]))
        more = f" and {len(steps) - 3} more" if len(steps) > 3 else ""
        reasons[series_ids[index_]] = f"no future values of {', '.join(columns)} for {first}{more}"
    return found, reasons


def missing_future_message(reasons: dict[str, str], data: DataConfig, horizon: int, source: str) -> str:
    listed = "; ".join(f"series '{sid}': {why}" for sid, why in list(reasons.items())[:SHOWN])
    more = f"; and {len(reasons) - SHOWN} more series" if len(reasons) > SHOWN else ""
    return (f"{source}: this model reads the known-future columns {', '.join(data.future_covariates)} "
            f"(data.future_covariates) over the {horizon} steps after each series' last observed target, and "
            f"{listed}{more}. Add those rows after each series' last target, with the targets empty and these "
            f"columns filled, or give them in a file of their own: forecaster predict --future FILE "
            f"(predict.future). --skip-bad-series forecasts the other series.")


def _series_keys(frame: pd.DataFrame, data: DataConfig) -> pd.Series:
    if data.series_id:
        return frame[data.id_column].astype(str)
    return pd.Series(SINGLE_SERIES_ID, index=frame.index)


def _refuse_text(frame: pd.DataFrame, columns: list[str], values: np.ndarray, source: str) -> None:
    for j, name in enumerate(columns):
        text = frame[name].astype("string").str.strip()
        bad = np.isnan(values[:, j]) & text.notna().to_numpy() & (text != "").fillna(False).to_numpy(dtype=bool)
        if bad.any():
            position = int(np.argmax(bad))
            raise DataError(f"{source}: column '{name}' (data.future_covariates), future row {position + 1}: "
                            f"{frame[name].iloc[position]!r} is not a number")
