"""Output files: stable names that stay inside the folder, atomic writes, the manifest as commit record."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecaster import outputs
from forecaster.tracking import file_fingerprint

ORIGIN = pd.Timestamp("2024-03-30 23:00")


def forecast_frame(value: float = 1.5) -> pd.DataFrame:
    return pd.DataFrame({
        "series_id": ["a", "a", "b", "b"], "target": "load",
        "timestamp": pd.to_datetime(["2024-03-31 00:00", "2024-03-31 01:00"] * 2), "step": [1, 2, 1, 2],
        "forecast": [value, value + 1, value + 2, value + 3],
        "created_at": pd.Timestamp("2026-01-01 12:00", tz="UTC"),
    })


def test_names_are_stable_per_model_and_origin(tmp_path):
    paths = outputs.output_paths(tmp_path, "demo-v3", ORIGIN, "parquet")
    assert paths.forecast == tmp_path / "forecast_demo-v3_20240330T230000.parquet"
    assert paths.manifest == tmp_path / "forecast_demo-v3_20240330T230000.manifest.json"
    assert outputs.output_paths(tmp_path, "demo-v3", ORIGIN, "parquet") == paths
    assert outputs.output_paths(tmp_path, "demo-v4", ORIGIN, "parquet") != paths
    assert outputs.output_paths(tmp_path, "demo-v3", ORIGIN + pd.Timedelta("1h"), "parquet") != paths
    aware = pd.Timestamp("2024-03-31 00:00", tz="Europe/Paris")
    assert outputs.origin_label(aware) == "20240330T230000Z"


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=60))
def test_any_model_name_gives_a_file_inside_the_output_folder(name):
    folder = Path("/srv/forecasts")
    paths = outputs.output_paths(folder, name, ORIGIN, "csv")
    assert paths.forecast.parent == folder and paths.manifest.parent == folder
    assert paths.forecast.name.startswith("forecast_") and paths.forecast.suffix == ".csv"


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_written_output_reads_back_with_a_manifest_that_describes_it(tmp_path, fmt):
    paths = outputs.output_paths(tmp_path, "demo-v1", ORIGIN, fmt)
    manifest = outputs.write_output(forecast_frame(), paths, {"counts": {"rows": 4}})

    back = pd.read_csv(paths.forecast) if fmt == "csv" else pd.read_parquet(paths.forecast)
    assert back["forecast"].tolist() == [1.5, 2.5, 3.5, 4.5]
    assert json.loads(paths.manifest.read_text()) == manifest
    assert manifest["output"] == {"file": paths.forecast.name, "format": fmt, **file_fingerprint(paths.forecast),
                                  "write_s": manifest["output"]["write_s"]}
    assert outputs.existing_manifest(paths) == manifest
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([paths.forecast.name, paths.manifest.name])


def test_a_write_that_fails_midway_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "forecast.csv"
    target.write_text("old,complete\n")

    def half_then_fail(handle):
        handle.write(b"new,partial\n")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        outputs.atomic_write(target, half_then_fail)
    assert target.read_text() == "old,complete\n"
    assert [p.name for p in tmp_path.iterdir()] == ["forecast.csv"]


KILLED_MIDWAY = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from forecaster.outputs import atomic_write

    def write(handle):
        handle.write(b"new,partial\\n" * 1000)
        handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)  # as if the machine pulled the plug mid-write

    atomic_write(Path(sys.argv[1]), write)
""")


def test_a_process_killed_mid_write_leaves_no_partial_output(tmp_path):
    target = tmp_path / "forecast.csv"
    target.write_text("old,complete\n")
    killed = subprocess.run([sys.executable, "-c", KILLED_MIDWAY, str(target)], cwd=Path(__file__).parents[1])
    assert killed.returncode == -9

    assert target.read_text() == "old,complete\n"
    leftovers = [p for p in tmp_path.iterdir() if p != target]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".forecast.csv.tmp-")  # hidden, never the output

    outputs.write_frame(forecast_frame(), target, "csv")  # the next write clears what the dead process left
    assert [p.name for p in tmp_path.iterdir()] == ["forecast.csv"]


def test_an_output_without_its_manifest_counts_as_absent(tmp_path):
    paths = outputs.output_paths(tmp_path, "demo-v1", ORIGIN, "csv")
    outputs.write_output(forecast_frame(), paths, {})
    assert outputs.existing_manifest(paths) is not None

    paths.manifest.write_text("{not json")
    assert outputs.existing_manifest(paths) is None
    paths.manifest.unlink()
    assert outputs.existing_manifest(paths) is None


def test_a_forecast_file_changed_after_its_manifest_counts_as_absent(tmp_path):
    paths = outputs.output_paths(tmp_path, "demo-v1", ORIGIN, "csv")
    outputs.write_output(forecast_frame(), paths, {})
    with paths.forecast.open("a") as handle:
        handle.write("a,load,2024-03-31 02:00:00,3,9.9,\n")
    assert outputs.existing_manifest(paths) is None


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("crash while writing")


def test_a_replacement_that_fails_leaves_the_old_file_marked_incomplete(tmp_path):
    """The old manifest goes first, so an output whose replacement failed is redone by the next run instead of
    passing for a complete one."""
    paths = outputs.output_paths(tmp_path, "demo-v1", ORIGIN, "csv")
    outputs.write_output(forecast_frame(1.5), paths, {})
    old_bytes = paths.forecast.read_bytes()

    with pytest.raises(RuntimeError, match="crash while writing"):
        outputs.write_output(forecast_frame().assign(forecast=Unprintable()), paths, {})
    assert paths.forecast.read_bytes() == old_bytes
    assert outputs.existing_manifest(paths) is None
    assert [p.name for p in tmp_path.iterdir()] == [paths.forecast.name]


def test_names_made_from_ids_are_safe_and_never_collide():
    from forecaster.outputs import safe_file_name

    ids = ["site_a", "../../etc/passwd", "a/b", "a_b", "x" * 300, "x" * 299 + "y", "Zürich", ".hidden", "a\nb"]
    names = [safe_file_name(i) for i in ids]
    assert names[0] == "site_a" and names[3] == "a_b"  # a safe id is kept as it is
    assert len(set(names)) == len(ids)
    for name in names:
        assert len(name) <= 70 and not name.startswith(".") and all(c.isalnum() or c in "._-" for c in name)


def test_every_registered_format_round_trips_a_forecast_and_the_config_lists_the_registry(tmp_path):
    from forecaster.config import OUTPUT_FORMATS

    assert OUTPUT_FORMATS == list(outputs.FORMATS)
    frame = pd.DataFrame({"series_id": ["007", "7"], "timestamp": pd.to_datetime(["2024-01-01", "2024-01-02"]),
                          "forecast": [1.5, 2.5]})
    for name in outputs.FORMATS:
        path = tmp_path / f"forecast.{name}"
        outputs.write_frame(frame, path, name)
        back = outputs.read_frame(path, name)
        assert back["series_id"].tolist() == ["007", "7"] and back["forecast"].tolist() == [1.5, 2.5]
    with pytest.raises(ValueError, match="unknown output format 'xlsx'; expected one of csv, parquet"):
        outputs.write_frame(frame, tmp_path / "forecast.xlsx", "xlsx")
