"""Figures logged with runs: forecast against actual, error by horizon step, the comparison leaderboard."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def forecast_vs_actual(
    history: np.ndarray, actual: np.ndarray, pred: np.ndarray, title: str,
    bands: dict[int, tuple[np.ndarray, np.ndarray]] | None = None,
) -> Figure:
    """One window of one target: the lookback, what happened next, the forecast and its prediction intervals.
    Arrays are [L] and [H]; bands: level -> (lower, upper), each [H]."""
    fig, ax = plt.subplots(figsize=(9, 3.5))
    past = np.arange(-len(history), 0)
    future = np.arange(len(actual))
    ax.plot(past, history, color="0.4", label="history")
    ax.plot(future, actual, color="black", label="actual")
    ax.plot(future, pred, color="tab:blue", label="forecast")
    for level, (lower, upper) in sorted((bands or {}).items(), reverse=True):  # widest first, narrower on top
        ax.fill_between(future, lower, upper, color="tab:blue", alpha=0.15, label=f"{level}% interval")
    ax.axvline(-0.5, color="0.7", linestyle="--")
    ax.set_xlabel("step relative to forecast origin")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    return fig


def error_by_step(errors: dict[str, np.ndarray], title: str) -> Figure:
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for name, values in errors.items():
        ax.plot(np.arange(1, len(values) + 1), values, marker=".", label=name)
    ax.set_xlabel("horizon step")
    ax.set_ylabel("error (standardised scale)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def leaderboard(table: pd.DataFrame, metric: str) -> Figure:
    ordered = table.sort_values(metric)
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(ordered) + 1.5))
    ax.barh(ordered["model"], ordered[metric], color="tab:blue")
    ax.invert_yaxis()
    ax.set_xlabel(metric)
    ax.set_title("model comparison (lower is better)")
    fig.tight_layout()
    return fig


def close(fig: Figure) -> None:
    plt.close(fig)
