"""The README's Python snippet runs as written (in a folder holding the demo config and data)."""

import re
import shutil

import pytest
from helpers import REPO_ROOT

pytestmark = pytest.mark.trains  # the snippet trains a small GRU for two epochs


def readme_snippet() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    match = re.search(r"<!-- README snippet: tests/test_readme.py runs it -->\n```python\n(.*?)```", text, re.S)
    assert match, "the marked snippet is gone from README.md"
    return match.group(1)


def test_the_python_snippet_trains_evaluates_forecasts_and_saves(tmp_path, monkeypatch, capsys):
    (tmp_path / "configs").mkdir()
    (tmp_path / "data").mkdir()
    shutil.copy(REPO_ROOT / "configs" / "demo-gru.yaml", tmp_path / "configs")
    shutil.copy(REPO_ROOT / "data" / "demo.csv", tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(readme_snippet(), "README.md", "exec"), namespace)
    mase, best_epoch = capsys.readouterr().out.split()
    assert 0 < float(mase) < 5 and best_epoch in {"0", "1"}
    forecast = namespace["forecast"]
    assert set(forecast["step"]) == set(range(1, 25)) and forecast["series_id"].nunique() > 1
    assert (tmp_path / "models" / "gru" / "bundle.json").is_file()
