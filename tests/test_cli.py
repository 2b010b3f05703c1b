"""The command line as users run it: a real subprocess of the installed `forecaster` command."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import run_cli

REPO = Path(__file__).resolve().parents[1]


def forecaster(*args, cwd=REPO, timeout=600):
    return run_cli(*args, cwd=cwd, timeout=timeout, env={"OMP_NUM_THREADS": "1"})


def test_help_is_instant_and_lists_the_commands(tmp_path):
    started = time.perf_counter()
    result = forecaster("--help")
    assert result.returncode == 0
    for command in ("init", "validate", "train", "compare", "tune", "predict", "schedule", "monitor", "ui"):
        assert command in result.stdout
    # Heavy libraries are imported by the commands that need them, never by --help.
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, forecaster_pipelines.cli as c\n"
         "try: c.main(['--help'])\nexcept SystemExit: pass\n"
         "print(sorted(m for m in ('torch', 'mlflow', 'pytorch_lightning') if m in sys.modules))"],
        # an empty folder: not the repository, nor its parent (a clone named `forecaster` there would shadow the
        # installed package as a namespace package)
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert probe.stdout.strip().endswith("[]"), probe.stdout + probe.stderr
    assert time.perf_counter() - started < 30  # generous: a loaded CI machine; the import check is the real test


def test_validate_demo_reports_every_series(tmp_path):
    result = forecaster("validate", "configs/demo.yaml", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ok"] and report["series"] >= 3


def test_user_errors_print_one_message_and_exit_non_zero(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp;series_id;load\n2024-01-01 00:00;a;1\n")
    result = forecaster("validate", "configs/demo.yaml", "--set", f"data.path={bad}", "--set", "data.covariates=[]")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert str(bad) in result.stderr and "semicolon" in result.stderr


def test_unknown_override_key_is_named():
    result = forecaster("train", "configs/demo-lstm.yaml", "--set", "train.max_epoch=1")
    assert result.returncode == 2
    assert "train.max_epoch" in result.stderr and "train.max_epochs" in result.stderr


@pytest.mark.slow
def test_train_json_last_line_has_the_contract_keys(tmp_path):
    shutil.copy(REPO / "data" / "demo.csv", tmp_path / "demo.csv")
    result = forecaster(
        "train", REPO / "configs" / "demo-gru.yaml", "--json",
        "--set", f"data.path={tmp_path / 'demo.csv'}", "--set", f"tracking.state_dir={tmp_path / 'state'}",
        "--set", "train.max_epochs=1", "--set", "train.limit_train_batches=3", "--set", "train.progress=false",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("mse", "mae", "mae_original", "rmse_original", "smape", "mase", "run_id"):
        assert key in summary
    assert summary["mse"] > 0 and len(summary["run_id"]) == 32
    assert (tmp_path / "state" / "mlflow.db").is_file()
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
def test_a_log_file_gets_one_line_per_epoch_and_no_library_noise(tmp_path):
    common = ["--set", f"data.path={REPO / 'data' / 'demo.csv'}", "--set", f"tracking.state_dir={tmp_path / 'state'}",
              "--set", "train.max_epochs=4", "--set", "train.patience=0", "--set", "train.limit_train_batches=3"]
    for progress in ("true", "false"):  # stderr is a pipe here, as under cron: no bar either way
        result = forecaster("train", REPO / "configs" / "demo-gru.yaml", *common, "--set", f"train.progress={progress}",
                            cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        lines = result.stderr.splitlines()
        epochs = [line for line in lines if " epoch " in line]
        assert len(epochs) == 4 and "epoch 4/4" in epochs[-1]
        assert all(word in epochs[0] for word in ("train_loss", "val_loss", "grad_norm", "clipped"))
        assert "\r" not in result.stderr and len(lines) <= 12
        assert "Creating initial MLflow database tables" not in result.stderr


@pytest.mark.slow
def test_commands_leave_nothing_in_the_working_folder(tmp_path):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    config = tmp_path / "demo.yaml"
    config.write_text((REPO / "configs" / "demo.yaml").read_text())
    store = ["--set", f"tracking.uri=sqlite:///{elsewhere / 'db' / 'runs.db'}",
             "--set", f"tracking.state_dir={elsewhere / 'state'}", "--set", f"data.path={REPO / 'data' / 'demo.csv'}",
             "--set", "train.max_epochs=1", "--set", "train.limit_train_batches=2"]
    (elsewhere / "db").mkdir(parents=True)
    commands = [
        ("validate", config, *store),
        ("train", config, *store),
        ("compare", config, *store, "--set", "compare.models=[naive, seasonal_naive, linear]"),
        ("predict", config, *store, "--model", "models:/demo@champion", "--data", REPO / "data" / "demo.csv",
         "--output", elsewhere / "out"),
        ("schedule", config, *store, "--once", "--set", f"predict.output={elsewhere / 'out'}"),
    ]
    for command in commands:
        result = forecaster(*command, cwd=work)
        assert result.returncode == 0, (command[0], result.stderr[-3000:])
        assert sorted(p.name for p in work.iterdir()) == [], command[0]
    assert (elsewhere / "db" / "artifacts").is_dir()  # artifacts beside the database they belong to
    assert any((elsewhere / "out").iterdir())


def test_the_library_parses_no_arguments_and_imports_no_job():
    """forecaster/ is the library; the jobs and the command line live in pipelines/ (`forecaster_pipelines`)."""
    import ast

    for path in (REPO / "forecaster").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert not name.startswith(("pipelines", "forecaster_pipelines", "argparse")), (path, name)


def test_every_package_folder_is_installed():
    """pyproject lists the packages (pipelines/ installs under another name): a new folder must be listed too."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "forecaster").rglob("__init__.py")}
    assert found | {"forecaster_pipelines"} == listed
