"""The `forecaster` command line. Every subcommand is a thin layer over a pipeline's `run` function.

Heavy modules (torch, Lightning, MLflow) are imported inside the subcommands that need them, so `--help`
answers at once. Errors the user can fix are printed as one message, without a traceback, with exit code 2.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from forecaster.config import OUTPUT_FORMATS
from forecaster.errors import ForecasterError, Interrupted

EXAMPLES = """\
examples:
  forecaster init sales.csv                        write sales.yaml for your file, then validate it
  forecaster validate configs/demo.yaml            check a data file, one line per series
  forecaster train configs/demo-lstm.yaml --json   train one model, print validation and test metrics
  forecaster compare configs/demo.yaml             rnn vs lstm vs gru vs baselines; deploy a winner that beats
                                                   the champion on new data
  forecaster tune configs/demo.yaml --trials 30     search on validation; write configs/demo-tuned.yaml
  forecaster predict --model models:/demo@champion --data data/demo.csv --output outputs/
  forecaster schedule configs/demo.yaml --once     one scheduled cycle, for cron or systemd
  forecaster monitor configs/demo.yaml --json      score past forecasts; exit 3 on decay
  forecaster ui                                    browse runs in the MLflow UI

Any config key can be overridden: --set model.cell=gru --set train.max_epochs=5
"""


def _add_config_args(parser: argparse.ArgumentParser, config_required: bool = True) -> None:
    parser.add_argument("config", nargs=None if config_required else "?", help="YAML config file (see configs/)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.max_epochs=5 (repeatable)",
    )


def _load(args: argparse.Namespace):
    from forecaster.config import load_config

    return load_config(args.config, args.overrides)


def _print_json(result: dict[str, Any]) -> None:
    print(json.dumps(result, default=str, sort_keys=True))


def cmd_init(args: argparse.Namespace) -> int:
    from . import init

    result = init.run(args.data, args.output, force=args.force)
    print(init.format_result(result))
    return 0 if result.ok else 1


def cmd_validate(args: argparse.Namespace) -> int:
    from . import validate

    result = validate.run(_load(args))
    print(validate.format_report(result))
    if args.json:
        _print_json({"ok": result.ok, "source": result.source, "series": len(result.report),
                     "problems": result.problems, "report": result.report.to_dict(orient="records")})
    return 1 if result.problems else 0


def cmd_train(args: argparse.Namespace) -> int:
    from . import train

    result = train.run(_load(args), resume=args.resume)
    print(train.format_result(result))
    if args.json:
        _print_json(result.summary())
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from . import compare

    config = _load(args)
    if args.promote:
        config = config.with_overrides({"compare.promote": "always"})
    result = compare.run(config, resume=args.resume)
    print(compare.format_result(result))
    if args.json:
        _print_json(result.summary())
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from . import tune

    config = _load(args)
    overrides = {"tune.trials": args.trials, "tune.timeout": args.timeout, "tune.jobs": args.jobs}
    config = config.with_overrides({key: value for key, value in overrides.items() if value is not None})
    result = tune.run(config, config_path=args.config, output=args.output, then_compare=args.then_compare)
    print(tune.format_result(result))
    if args.json:
        _print_json(result.summary())
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from . import predict

    config = _load(args)
    overrides = {
        "predict.model": args.model, "predict.data": args.data, "predict.future": args.future,
        "predict.output": args.output,
        "predict.format": args.format, "predict.engine": args.engine,
        "predict.skip_bad_series": args.skip_bad_series or None, "predict.overwrite": args.overwrite or None,
    }
    config = config.with_overrides({key: value for key, value in overrides.items() if value is not None})
    result = predict.run(config)
    print(predict.format_result(result))
    if args.json:
        _print_json(result.summary())
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:
    from . import schedule

    return schedule.run(_load(args), once=args.once)


def cmd_monitor(args: argparse.Namespace) -> int:
    from . import monitor

    result = monitor.run(_load(args), forecasts=args.forecasts, actuals=args.actuals)
    print(monitor.format_result(result))
    if args.json:
        _print_json(result.summary())
    return 3 if result.decay else 0


def cmd_ui(args: argparse.Namespace) -> int:
    from . import ui

    return ui.run(_load(args), host=args.host, port=args.port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="forecaster",
        description="Train, compare and schedule recurrent time-series forecasters (RNN, LSTM, GRU), tracked in MLflow.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("-v", "--verbose", action="store_true", help="more log output; tracebacks on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    init = commands.add_parser("init", help="write a commented config for a CSV or Parquet file; validate it")
    init.add_argument("data", help="the data file: CSV (any common delimiter) or Parquet")
    init.add_argument("-o", "--output", help="where to write the config (default: <data file stem>.yaml here)")
    init.add_argument("--force", action="store_true", help="replace an existing config file")
    init.set_defaults(handler=cmd_init)

    validate = commands.add_parser("validate", help="check a data file against a config; print a per-series report")
    _add_config_args(validate)
    validate.add_argument("--json", action="store_true", help="end with one JSON line for scripts")
    validate.set_defaults(handler=cmd_validate)

    train = commands.add_parser("train", help="train one model; save it; print its validation and test metrics")
    _add_config_args(train)
    train.add_argument("--json", action="store_true", help="end with one JSON line of metrics and the run id")
    train.add_argument("--resume", action="store_true", help="continue from the last checkpoint of this config")
    train.set_defaults(handler=cmd_train)

    compare = commands.add_parser(
        "compare", help="train several model types (networks, baselines, ets/theta/mstl/arima) on identical data, "
                        "combine the best into an ensemble; rank on validation; register a winner that beats the "
                        "champion"
    )
    _add_config_args(compare)
    compare.add_argument("--json", action="store_true", help="end with one JSON line: leaderboard and winner")
    compare.add_argument("--resume", action="store_true",
                         help="continue the newest interrupted comparison of this config, keeping its finished "
                              "candidates")
    compare.add_argument("--promote", action="store_true",
                         help="move the alias to a winner that beats seasonal naive even when it does not beat, or "
                              "cannot be compared with, the current champion (compare.promote: always)")
    compare.set_defaults(handler=cmd_compare)

    tune = commands.add_parser(
        "tune", help="search cell, strategy, lookback and size on validation (Optuna); write the best as a config")
    _add_config_args(tune)
    tune.add_argument("--trials", type=int,
                      help="finished trials the study should hold (tune.trials); a rerun continues")
    tune.add_argument("--timeout", type=float, metavar="MIN", help="minutes for this run (tune.timeout)")
    tune.add_argument("--jobs", type=int, help="worker processes running trials in parallel (tune.jobs)")
    tune.add_argument("-o", "--output",
                      help="where to write the tuned config (default: <config stem>-tuned.yaml beside it)")
    tune.add_argument("--then-compare", action="store_true",
                      help="continue into compare with the tuned config (its selection and champion rules apply)")
    tune.add_argument("--json", action="store_true",
                      help="end with one JSON line: best_value, best_params, trials, pruned, config_path, run_id")
    tune.set_defaults(handler=cmd_tune)

    predict = commands.add_parser("predict", help="multi-step forecasts for every series in a file")
    _add_config_args(predict, config_required=False)
    predict.add_argument("--model", help="MLflow model URI (models:/NAME@champion, runs:/ID/model, ...) or folder")
    predict.add_argument("--data", help="history: CSV or Parquet in the training file's layout")
    predict.add_argument("--future", metavar="FILE",
                         help="known-future covariates over the horizon (series id, timestamp, the model's "
                              "data.future_covariates; an optional scenario column), for a model that reads them")
    predict.add_argument("--output", help="folder for the forecast file and its manifest")
    predict.add_argument("--format", choices=OUTPUT_FORMATS, help="output format (default csv)")
    predict.add_argument("--engine", choices=["pandas", "spark"], help="where to run (default pandas)")
    predict.add_argument("--skip-bad-series", action="store_true", help="forecast the good series, report the rest")
    predict.add_argument("--overwrite", action="store_true", help="replace an existing output for this origin")
    predict.add_argument("--json", action="store_true", help="end with one JSON line describing the batch")
    predict.set_defaults(handler=cmd_predict)

    schedule = commands.add_parser("schedule", help="run batch forecasts on a cron timetable")
    _add_config_args(schedule)
    schedule.add_argument("--once", action="store_true", help="run one cycle now and exit (for cron/systemd)")
    schedule.set_defaults(handler=cmd_schedule)

    monitor = commands.add_parser(
        "monitor", help="score past forecasts against the actuals that arrived; exit 3 when the model has decayed")
    _add_config_args(monitor)
    monitor.add_argument("--forecasts", help="folder of committed forecasts (default predict.output)")
    monitor.add_argument("--actuals", help="actuals in the training layout (default monitor.actuals, else data.path)")
    monitor.add_argument("--json", action="store_true", help="end with one JSON line for scripts")
    monitor.set_defaults(handler=cmd_monitor)

    ui = commands.add_parser("ui", help="start the MLflow UI on the configured store")
    _add_config_args(ui, config_required=False)
    ui.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1; no authentication)")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(handler=cmd_ui)
    return parser


def _version() -> str:
    from forecaster import __version__

    return f"forecaster {__version__}"


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    if not verbose:
        from forecaster.runtime import quiet_libraries

        quiet_libraries()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    if args.command not in ("ui",):
        from forecaster.runtime import set_allocator

        set_allocator()
    handler: Callable[[argparse.Namespace], int] = args.handler
    previous = _raise_on_signals()
    try:
        return handler(args)
    except ForecasterError as exc:
        if args.verbose:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(_interrupted_line(exc, args), file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        if args.verbose or exc.errno not in FORESEEABLE_OS_ERRORS:
            raise
        print(f"error: {FORESEEABLE_OS_ERRORS[exc.errno]} ({exc.filename or exc.strerror}); {FIX_OS_ERROR}",
              file=sys.stderr)
        return 2
    finally:
        for signum, previous_handler in previous.items():
            signal.signal(signum, previous_handler)


# Operating-system errors a user can fix, as one line: what happened, then `FIX_OS_ERROR`.
FORESEEABLE_OS_ERRORS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                         errno.EACCES: "permission denied", errno.EROFS: "read-only file system"}
FIX_OS_ERROR = ("files are written beside and renamed into place, so nothing half-written was left; make room or "
                "point tracking.state_dir / predict.output elsewhere, then rerun (-v shows the traceback)")

# How to continue each command after an interruption; others are rerun as they were.
CONTINUE = {
    "train": "forecaster train {config} --resume",
    "compare": "forecaster compare {config} --resume",
    "tune": "forecaster tune {config} (the study resumes; finished trials count)",
    "schedule": "forecaster schedule {config} (the next cycle runs as planned)",
}


def _raise_on_signals() -> dict[int, Any]:
    """SIGTERM and SIGINT raise `Interrupted` where the process is, so each layer can keep what it finished on
    the way out; a second signal while that happens exits at once. Only the main thread may install handlers.
    Returns the handlers it replaced."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    received: list[int] = []

    def handle(signum: int, frame: Any) -> None:
        received.append(signum)
        if len(received) > 1:
            print(f"{signal.Signals(signum).name} again: exiting now", file=sys.stderr)
            os._exit(128 + signum)
        raise Interrupted(signum)

    return {signum: signal.signal(signum, handle) for signum in (signal.SIGINT, signal.SIGTERM)}


def _interrupted_line(exc: Interrupted, args: argparse.Namespace) -> str:
    """One line: which signal, what was kept, how to continue."""
    kept = "; ".join(exc.kept) if exc.kept else "everything finished; nothing half-written was left"
    config = getattr(args, "config", None)
    again = CONTINUE.get(args.command, "rerun the same command").format(config=config)
    return f"interrupted by {exc.signal_name}: kept {kept}. Continue with: {again}"
