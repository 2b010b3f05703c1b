"""Forecast files on disk: a stable name per model and forecast origin, atomic writes, a manifest beside each.

A batch writes two files into the output folder:

    forecast_<model>_<origin>.csv|parquet      the forecasts
    forecast_<model>_<origin>.manifest.json    what made them: input hash, model, counts, timings

`<model>` is a registered name and version (`demo-v3`), a logged model id, a run id or a hash of a local model
folder; `<origin>` is the forecast origin (`20240131T230000`). Each file goes to a temporary file in the same
folder, is fsynced and renamed over its final name, so a reader never sees a partial file. The manifest is the
commit record: it is removed before a forecast file is replaced and written after it, so a crash in between
leaves a forecast without a manifest, which the next run treats as absent and rewrites.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd

from forecaster.tracking import file_fingerprint

FORMATS = ("csv", "parquet")


@dataclass(frozen=True)
class OutputPaths:
    forecast: Path
    manifest: Path


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
    if fmt not in FORMATS:
        raise ValueError(f"unknown output format {fmt!r}; expected one of {FORMATS}")
    stem = f"forecast_{safe_label(model_label)}_{origin_label(origin)}"
    folder = Path(folder)
    return OutputPaths(forecast=folder / f"{stem}.{fmt}", manifest=folder / f"{stem}.manifest.json")


def existing_manifest(paths: OutputPaths) -> dict[str, Any] | None:
    """The manifest of a complete earlier output at these paths, or None when there is none or it is broken."""
    if not (paths.manifest.is_file() and paths.forecast.is_file()):
        return None
    try:
        manifest = json.loads(paths.manifest.read_text())
    except (OSError, ValueError):
        return None
    recorded = manifest.get("output", {})
    if recorded.get("file") != paths.forecast.name or recorded.get("bytes") != paths.forecast.stat().st_size:
        return None
    return manifest


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
    if fmt == "csv":
        atomic_write(path, lambda handle: frame.to_csv(handle, index=False))
    elif fmt == "parquet":
        atomic_write(path, lambda handle: frame.to_parquet(handle, index=False))
    else:
        raise ValueError(f"unknown output format {fmt!r}; expected one of {FORMATS}")


def write_output(frame: pd.DataFrame, paths: OutputPaths, manifest: dict[str, Any]) -> dict[str, Any]:
    """Write the forecast file, then its manifest, completed with an `output` entry: the file's name, format,
    sha256, size and the seconds its writing took. Returns the manifest as written."""
    fmt = paths.forecast.suffix.lstrip(".")
    paths.manifest.unlink(missing_ok=True)
    start = time.perf_counter()
    write_frame(frame, paths.forecast, fmt)
    seconds = round(time.perf_counter() - start, 4)
    fingerprint = file_fingerprint(paths.forecast)
    manifest = {**manifest, "output": {"file": paths.forecast.name, "format": fmt, **fingerprint, "write_s": seconds}}
    text = json.dumps(manifest, indent=2, default=str) + "\n"
    atomic_write(paths.manifest, lambda handle: handle.write(text.encode()))
    return manifest


def _remove_stale_temporaries(path: Path) -> None:
    """Temporary files for `path` left by processes that no longer run (killed mid-write)."""
    for temporary in path.parent.glob(f".{path.name}.tmp-*"):
        pid = temporary.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _process_alive(int(pid)):
            temporary.unlink(missing_ok=True)


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
