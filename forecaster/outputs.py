"""Forecast outputs on disk, for every engine: a stable name per model and forecast origin, nothing partial ever
visible, a manifest beside each output as its commit record.

A batch writes two entries into the output folder:

    forecast_<model>_<origin>.csv|parquet      the forecasts: a file (pandas) or a Parquet dataset folder (Spark)
    forecast_<model>_<origin>.manifest.json    what made them: input hash, model, counts, timings

The forecast file's columns are named here too (`FORECAST_COLUMNS`, `quantile_column`, `interval_column`,
`output_columns`, `METADATA_COLUMNS`), and read back here: `read_committed(folder)` gives every complete output of
a folder with its manifest, and `widest_band(columns)` which columns hold a forecast's widest band.

`<model>` is a registered name and version (`demo-v3`), a logged model id, a run id or a hash of a local model
folder; `<origin>` is the forecast origin (`20240131T230000`). A file goes to a temporary file in the same
folder, is fsynced and renamed over its final name; a dataset is written whole into a hidden `staging_folder` in
the same folder and renamed into place. So a reader never sees a partial output. The manifest is the commit
record: it is removed before an output is replaced and written after it, so a crash in between leaves an output
without a manifest, which the next run treats as absent and rewrites. Hidden leftovers of a killed process
(temporary files, staging folders) are removed by the next write.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd

from forecaster.registry import Registry
from forecaster.tracking import file_fingerprint



@dataclass(frozen=True)
class OutputFormat:
    """A forecast file format (`predict.format`): how a frame is written to a binary handle, and read back with
    the series ids as text. A new format is one `register_format` here (and its name in `config.PredictConfig`,
    which loads without pandas' writers; a test keeps the two equal)."""

    name: str
    write: Callable[[pd.DataFrame, BinaryIO], None]
    read: Callable[[Path], pd.DataFrame]


FORMATS: Registry[OutputFormat] = Registry("output format")
register_format = FORMATS.add


register_format(OutputFormat("csv", lambda frame, handle: frame.to_csv(handle, index=False),
                             lambda path: pd.read_csv(path, dtype={"series_id": str})))
register_format(OutputFormat("parquet", lambda frame, handle: frame.to_parquet(handle, index=False), pd.read_parquet))


def output_format(name: str) -> OutputFormat:
    if name not in FORMATS:
        raise ValueError(f"unknown output format {name!r}; expected one of {', '.join(FORMATS)}")
    return FORMATS[name]


# -- the forecast file's columns ----------------------------------------------------------------------------

FORECAST_COLUMNS = ("series_id", "target", "timestamp", "step", "forecast")
METADATA_COLUMNS = ("model_uri", "model_version", "source_run_id", "forecast_origin", "created_at")


def quantile_column(quantile: float) -> str:
    """0.1 -> `forecast_q10`."""
    return f"forecast_q{round(quantile * 100):02d}"


def interval_column(level: int, side: str) -> str:
    """(80, "lo") -> `forecast_lo_80`."""
    return f"forecast_{side}_{level}"


def output_columns(bundle) -> list[str]:
    """The columns a forecast of `bundle` (a `ModelBundle`) is written with, in order, by every engine: the
    forecast (a composite key's columns after `series_id`), its quantiles, its intervals, then `METADATA_COLUMNS`."""
    levels = bundle.calibration.levels if bundle.calibration is not None else []
    keys = bundle.config.data.key_columns if len(bundle.config.data.key_columns) > 1 else []
    return [FORECAST_COLUMNS[0], *keys, *FORECAST_COLUMNS[1:], *[quantile_column(q) for q in bundle.quantiles or []],
            *[interval_column(level, side) for level in levels for side in ("lo", "hi")], *METADATA_COLUMNS]


@dataclass(frozen=True)
class Band:
    """Which columns of a forecast file hold a band, and its nominal coverage (0-1)."""

    lower: str
    upper: str
    coverage: float


def widest_band(columns) -> Band | None:
    """The widest calibrated interval among `columns` (`forecast_lo_NN` / `forecast_hi_NN`), else the outermost
    quantile pair (`forecast_qNN`); None when the file has neither."""
    names = set(columns)
    levels = sorted(int(name.removeprefix("forecast_lo_")) for name in names
                    if name.startswith("forecast_lo_") and name.removeprefix("forecast_lo_").isdigit()
                    and interval_column(int(name.removeprefix("forecast_lo_")), "hi") in names)
    if levels:
        return Band(interval_column(levels[-1], "lo"), interval_column(levels[-1], "hi"), levels[-1] / 100.0)
    quantiles = sorted((int(name.removeprefix("forecast_q")), name) for name in names
                       if name.startswith("forecast_q") and name.removeprefix("forecast_q").isdigit())
    if len(quantiles) >= 2:
        (low, low_name), (high, high_name) = quantiles[0], quantiles[-1]
        return Band(low_name, high_name, (high - low) / 100.0)
    return None


# -- committing and reading outputs -------------------------------------------------------------------------

WRITTEN = "written"
SKIPPED_EXISTING = "skipped-existing"


@dataclass(frozen=True)
class OutputPaths:
    forecast: Path
    manifest: Path


@dataclass
class CommittedOutput:
    """What a batch left behind, for either engine: written now, or found complete and left as it was."""

    status: str  # WRITTEN or SKIPPED_EXISTING
    paths: OutputPaths
    manifest: dict[str, Any]  # as written now, or as found for SKIPPED_EXISTING
    seconds: float

    @property
    def rows(self) -> int:
        return int(self.manifest["counts"]["rows"])

    @property
    def series(self) -> int:
        return int(self.manifest["counts"]["series"])


def safe_label(text: str) -> str:
    """A file-name fragment: letters, digits, `.`, `_` and `-` only, never `.` or `..` by itself."""
    label = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "model"
    return label[:120]


def origin_label(origin: pd.Timestamp) -> str:
    """`2024-01-31 23:00` -> `20240131T230000`; a time with a zone is converted to UTC and gets a `Z`."""
    stamp = pd.Timestamp(origin)
    if stamp.tzinfo is None:
        return stamp.strftime("%Y%m%dT%H%M%S")
    return stamp.tz_convert("UTC").strftime("%Y%m%dT%H%M%SZ")


def output_paths(folder: str | Path, model_label: str, origin: pd.Timestamp, fmt: str) -> OutputPaths:
    output_format(fmt)  # an unknown format is refused before any name is made
    stem = f"forecast_{safe_label(model_label)}_{origin_label(origin)}"
    folder = Path(folder)
    return OutputPaths(forecast=folder / f"{stem}.{fmt}", manifest=folder / f"{stem}.manifest.json")


def existing_manifest(paths: OutputPaths) -> dict[str, Any] | None:
    """The manifest of a complete earlier output at these paths, or None when there is none or it is broken."""
    if not (paths.manifest.is_file() and paths.forecast.exists()):
        return None
    try:
        manifest = json.loads(paths.manifest.read_text())
    except (OSError, ValueError):
        return None
    recorded = manifest.get("output", {})
    if recorded.get("file") != paths.forecast.name or recorded.get("bytes") != _size(paths.forecast):
        return None
    return manifest


def safe_file_name(text: str, limit: int = 60) -> str:
    """`text` as a file name part: letters, digits, '-', '_' and '.' kept, anything else '_'; when that changed
    `text` or it is longer than `limit`, a short hash of the original follows, so that two ids never share a name
    ('a/b' and 'a_b', or two long ids with one beginning)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", text).lstrip(".")[:limit]
    if safe == text:
        return safe
    return f"{safe}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def staging_folder(folder: str | Path) -> Path:
    """A fresh path for a dataset to be written whole (by Spark) before `write_output` moves it into place: a
    visible name inside a hidden folder of its own in `folder` (Spark ignores a hidden path when it reads one
    back). Staging folders of processes that no longer run are removed first."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(".staging-*"):
        if _left_by_dead_process(stale):
            _remove(stale)
    hidden = folder / f".staging-{uuid.uuid4().hex[:12]}-{os.getpid()}"
    hidden.mkdir()
    return hidden / "forecasts"


def discard(staging: Path) -> None:
    """Remove a `staging_folder` and its hidden folder (its forecasts are not wanted, or already moved)."""
    _remove(staging.parent)


def output_fingerprint(path: Path) -> dict[str, Any]:
    """sha256 and size of an output: of its one file, or of a dataset folder's files (names and bytes)."""
    if path.is_file():
        return file_fingerprint(path)
    digest, size = hashlib.sha256(), 0
    for file in sorted(item for item in path.rglob("*") if item.is_file()):
        digest.update(file.relative_to(path).as_posix().encode())
        digest.update(file_fingerprint(file)["sha256"].encode())
        size += file.stat().st_size
    return {"sha256": digest.hexdigest(), "bytes": size}


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call `write(handle)` on a temporary file beside `path`, fsync it, then rename it over `path`.

    On any error, KeyboardInterrupt included, the temporary file is removed and `path` is left as it was.
    A process killed outright leaves its hidden temporary file behind; the next write to `path` removes it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def write_frame(frame: pd.DataFrame, path: Path, fmt: str) -> None:
    """`frame` at `path` in the format `fmt`, atomically (`atomic_write`)."""
    writer = output_format(fmt).write
    atomic_write(path, lambda handle: writer(frame, handle))


def read_frame(path: Path, fmt: str) -> pd.DataFrame:
    """A forecast file written by `write_frame` (or a Parquet dataset written by Spark), ids as text."""
    return output_format(fmt).read(path)


@dataclass
class Committed:
    """A complete output found in a folder: its paths and manifest; `read()` gives its rows, ids as text."""

    paths: OutputPaths
    manifest: dict[str, Any]

    def read(self) -> pd.DataFrame:
        return read_frame(self.paths.forecast, self.manifest["output"].get("format", "csv"))


def read_committed(folder: Path) -> tuple[list[Committed], list[str]]:
    """Every output of `folder` that its manifest commits (by name order), and notes on what was left out: an
    unreadable manifest, a forecast that is absent or not the file its manifest describes, a forecast without a
    manifest (partial, or being replaced)."""
    found, notes, committed = [], [], set()
    for manifest_path in sorted(Path(folder).glob("forecast_*.manifest.json")):
        try:
            manifest = json.loads(manifest_path.read_text())
            paths = OutputPaths(forecast=Path(folder) / manifest["output"]["file"], manifest=manifest_path)
        except (OSError, ValueError, KeyError, TypeError):
            notes.append(f"{manifest_path.name}: unreadable manifest; its forecasts are skipped")
            continue
        if existing_manifest(paths) is None:
            notes.append(f"{paths.forecast.name}: absent or not the file its manifest describes; skipped")
            continue
        committed.add(paths.forecast.name)
        found.append(Committed(paths, manifest))
    uncommitted = sorted(p.name for p in Path(folder).glob("forecast_*") if not p.name.endswith(".manifest.json")
                         and p.name not in committed)
    if uncommitted:
        notes.append(f"{len(uncommitted)} forecast file(s) without a manifest (partial or being replaced) "
                     f"ignored: {', '.join(uncommitted[:3])}{' ...' if len(uncommitted) > 3 else ''}")
    return found, notes


def write_output(forecasts: pd.DataFrame | Path, paths: OutputPaths, manifest: dict[str, Any]) -> dict[str, Any]:
    """Commit `forecasts` at `paths`: remove the old manifest, put the forecasts in place, then write the manifest
    completed with an `output` entry: the output's name, format, sha256, size and the seconds its writing took.
    Returns the manifest as written.

    `forecasts`: a frame, written atomically as one file in the format `paths.forecast` ends with; or a dataset
    folder already written whole at a `staging_folder` path, renamed into place (its staging folder is removed
    either way).
    """
    fmt = paths.forecast.suffix.lstrip(".")
    paths.manifest.unlink(missing_ok=True)
    start = time.perf_counter()
    if isinstance(forecasts, pd.DataFrame):
        if paths.forecast.is_dir():  # a dataset another engine wrote; without its manifest it counts as absent
            _remove(paths.forecast)
        write_frame(forecasts, paths.forecast, fmt)
    else:
        _move_into_place(Path(forecasts), paths.forecast)
    seconds = round(time.perf_counter() - start, 4)
    fingerprint = output_fingerprint(paths.forecast)
    manifest = {**manifest, "output": {"file": paths.forecast.name, "format": fmt, **fingerprint, "write_s": seconds}}
    text = json.dumps(manifest, indent=2, default=str) + "\n"
    atomic_write(paths.manifest, lambda handle: handle.write(text.encode()))
    return manifest


def _move_into_place(staging: Path, path: Path) -> None:
    """Rename the finished dataset folder `staging` to `path`, setting aside whatever was there first."""
    try:
        replace_folder(staging, path)
    finally:
        discard(staging)


def replace_folder(new: Path, path: Path) -> None:
    """Rename the finished folder `new` to `path`; what was at `path` is set aside first and removed after, so
    a process killed on the way leaves the old folder or the new one whole (set-aside ones are removed by the
    next replace of `path`)."""
    _remove_stale_temporaries(path)
    aside = path.with_name(f".{path.name}.old-{os.getpid()}")
    if path.exists():
        os.replace(path, aside)
    os.replace(new, path)
    _fsync_folder(path.parent)
    _remove(aside)


def _remove_stale_temporaries(path: Path) -> None:
    """Temporary files and set-aside outputs for `path` left by processes that no longer run (killed mid-write)."""
    for pattern in (f".{path.name}.tmp-*", f".{path.name}.old-*"):
        for temporary in path.parent.glob(pattern):
            if _left_by_dead_process(temporary):
                _remove(temporary)


def _left_by_dead_process(path: Path) -> bool:
    """Hidden working names end in the writer's process id."""
    pid = path.name.rsplit("-", 1)[-1]
    return pid.isdigit() and not _process_alive(int(pid))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _size(path: Path) -> int:
    """Bytes of a file, or of all files in a dataset folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable: without this a power cut can undo it on some file systems."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
