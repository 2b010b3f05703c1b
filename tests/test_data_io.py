"""Reading files: formats, delimiters and the errors a user gets for a bad file."""

from __future__ import annotations

import pandas as pd
import pytest

from forecaster.config import DataConfig
from forecaster.data.io import read_table
from forecaster.errors import DataError

ROWS = "timestamp,value\n2024-01-01 00:00:00,1.5\n2024-01-01 01:00:00,2.5\n"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_csv_as_is(tmp_path):
    frame = read_table(DataConfig(), write(tmp_path, "a.csv", ROWS))
    assert list(frame.columns) == ["timestamp", "value"]
    assert frame["value"].tolist() == [1.5, 2.5]


def test_reads_parquet_by_extension_and_restores_a_named_index(tmp_path):
    path = tmp_path / "a.parquet"
    stamps = pd.date_range("2024-01-01", periods=2, freq="h", name="timestamp")
    frame = pd.DataFrame({"value": [1.0, 2.0]}, index=stamps)
    frame.to_parquet(path)
    read = read_table(DataConfig(path=str(path)))
    assert list(read.columns) == ["timestamp", "value"]
    assert read["value"].tolist() == [1.0, 2.0]


def test_explicit_format_overrides_the_extension(tmp_path):
    frame = read_table(DataConfig(format="csv"), write(tmp_path, "a.dat", ROWS))
    assert len(frame) == 2


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("a.xlsx", ROWS, ["a.xlsx", "data.format"]),
        ("empty.csv", "", ["empty.csv", "empty"]),
        ("blank.csv", "\n\n", ["blank.csv", "empty"]),
        ("header.csv", "timestamp,value\n", ["header.csv", "no data rows"]),
        ("ragged.csv", ROWS + "2024-01-01 02:00:00,3.5,9\n", ["ragged.csv", "line 4"]),
    ],
)
def test_bad_files_name_the_file_and_the_problem(tmp_path, name, text, expected):
    with pytest.raises(DataError) as error:
        read_table(DataConfig(), write(tmp_path, name, text))
    for part in expected:
        assert part in str(error.value)


def test_missing_file_names_the_path_and_the_key(tmp_path):
    with pytest.raises(DataError, match=r"not found: .*nope\.csv \(data\.path\)"):
        read_table(DataConfig(path=str(tmp_path / "nope.csv")))


@pytest.mark.parametrize(
    ("delimiter", "configured", "hint"),
    [(";", ",", "data.delimiter=';'"), ("\t", ",", 'data.delimiter="\\t"'), (",", ";", "data.delimiter=','")],
)
def test_a_different_delimiter_is_sniffed_and_named(tmp_path, delimiter, configured, hint):
    path = write(tmp_path, "a.csv", ROWS.replace(",", delimiter))
    with pytest.raises(DataError) as error:
        read_table(DataConfig(delimiter=configured), path)
    message = str(error.value)
    assert "a.csv" in message and hint in message and repr(configured) in message


def test_configured_semicolon_reads_a_semicolon_file(tmp_path):
    frame = read_table(DataConfig(delimiter=";"), write(tmp_path, "a.csv", ROWS.replace(",", ";")))
    assert frame["value"].tolist() == [1.5, 2.5]


def test_series_ids_are_kept_exactly_as_written_in_csv_and_parquet(tmp_path):
    """Ids that look like numbers stay text: 007 and 7 are two series, 1e3 is not 1000."""
    from forecaster.data.panel import build_panel

    ids = ["007", "7", "1e3", "0042"]
    stamps = pd.date_range("2024-01-01", periods=30, freq="h").strftime("%Y-%m-%d %H:%M")
    frame = pd.DataFrame({"site": [i for i in ids for _ in stamps], "timestamp": list(stamps) * len(ids),
                          "value": range(30 * len(ids))})
    csv = tmp_path / "ids.csv"
    frame.to_csv(csv, index=False)
    cfg = DataConfig(path=str(csv), series_id="site", target="value")
    assert build_panel(read_table(cfg), cfg, source=str(csv)).series_ids == ids
    parquet = tmp_path / "ids.parquet"
    frame.assign(site=frame["site"].map({"007": 7, "7": 8, "1e3": 9, "0042": 10})).to_parquet(parquet)
    cfg = DataConfig(path=str(parquet), series_id="site", target="value")
    assert build_panel(read_table(cfg), cfg, source=str(parquet)).series_ids == ["7", "8", "9", "10"]
