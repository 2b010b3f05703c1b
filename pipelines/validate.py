"""`forecaster validate`: check a data file against the config and report what training would see.

Fatal problems (missing columns, unparsable timestamps, non-numeric values, irregular frequency...) raise
`DataError`. Problems a setting can fix (gaps under `data.missing=error`, series too short for the window, a
split without windows) are collected in `ValidationResult.problems`, next to the per-series report.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from forecaster.config import Config
from forecaster.data.io import read_table
from forecaster.data.panel import Panel, apply_missing_policy, report_frame, series_reports
from forecaster.data.splits import compute_borders
from forecaster.data.validate import scan_frame
from forecaster.errors import DataError


@dataclass
class ValidationResult:
    """`report`: one row per input series (`panel.REPORT_COLUMNS`); `problems`: messages that make it unusable;
    `panel`: the panel training would use, None when the missing policy refused the data."""

    source: str
    report: pd.DataFrame
    problems: list[str] = field(default_factory=list)
    panel: Panel | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def run(config: Config) -> ValidationResult:
    """Read and check `config.data.path` with the data, window and split settings of `config`."""
    cfg = config.data
    scan = scan_frame(read_table(cfg), cfg, source=cfg.path)
    problems: list[str] = []
    try:
        panel = apply_missing_policy(scan, cfg.missing)
    except DataError as exc:
        return ValidationResult(cfg.path, report_frame(series_reports(scan)), [str(exc)])
    try:
        compute_borders(panel, config.split, config.window.lookback, config.window.horizon)
    except DataError as exc:
        problems.append(str(exc))
    return ValidationResult(cfg.path, panel.report_frame(), problems, panel)


def format_report(result: ValidationResult) -> str:
    """Plain-text report: a header line, the per-series table, then the problems or 'OK'."""
    report = result.report
    freq = report["freq"].iloc[0] if len(report) else "?"
    lines = [f"{result.source}: {len(report)} series, frequency '{freq}'", report.to_string(index=False), ""]
    dropped = report.loc[report["dropped"], "series_id"].tolist()
    if dropped:
        lines.append(f"dropped by data.missing=drop_series: {', '.join(dropped)}")
    filled = report.loc[report["filled"] > 0]
    if len(filled):
        counts = ", ".join(f"{row.series_id} ({row.filled} cells)" for row in filled.itertuples())
        lines.append(f"filled by data.missing: {counts}")
    if result.problems:
        lines.append(f"{len(result.problems)} problem(s):")
        lines.extend(f"- {problem}" for problem in result.problems)
    else:
        lines.append("OK")
    return "\n".join(lines)
