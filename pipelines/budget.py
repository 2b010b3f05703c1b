"""`compare.time_budget`: which candidates a comparison trains, in what order, and for how long."""

from __future__ import annotations

import logging
import time

from forecaster.config import Config

log = logging.getLogger(__name__)

CHEAP = ("naive", "seasonal_naive", "linear")  # under a second each: always trained, first


class Budget:
    """`compare.time_budget` (minutes): the cheap baselines first and always, then the statistical models, then
    the networks, each network capped (`train.max_minutes`) at its share of what is left after a reserve of a
    fifth of the budget for the ensemble, the refit and the registration; a candidate reached with nothing left
    is skipped and reported. Without a budget: every candidate, in `compare.models` order, uncapped."""

    RESERVE = 0.2

    def __init__(self, minutes: float | None, models):
        self.seconds = None if minutes is None else minutes * 60
        self.started = time.perf_counter()
        self.networks_left = sum(kind == "network" for _, kind, _ in models)
        self.skipped: list[str] = []
        self.capped: dict[str, Config] = {}  # name -> the config a network trained with, its cap set

    def order(self, models):
        if self.seconds is None:
            return list(models)
        rank = {kind: 0 for kind in CHEAP}
        return sorted(models, key=lambda model: rank.get(model[1], 2 if model[1] == "network" else 1))

    def allows_refit(self, seconds: float) -> bool:
        """Whether a refit of about `seconds` still fits the budget; when not, the selection model is registered
        as it is (trained on the training split), which is said in the log."""
        if self.seconds is None:
            return True
        left = self.seconds - (time.perf_counter() - self.started)
        if seconds <= left:
            return True
        log.info("refit skipped: about %.0f s of refitting would pass compare.time_budget (%.0f s left); the "
                 "winner is registered as trained on the training split", seconds, max(left, 0))
        return False

    def admit(self, name: str, kind: str, variant: Config) -> Config | None:
        """The candidate's config, capped to its share; None when no time is left for it."""
        if self.seconds is None or kind in CHEAP:
            return variant
        left = self.seconds * (1 - self.RESERVE) - (time.perf_counter() - self.started)
        if kind == "network":
            self.networks_left -= 1
            left /= max(self.networks_left, 0) + 1  # a seed of the best network comes after them all
        if left <= 0:
            log.info("%s: skipped, compare.time_budget (%.1f min) is spent", name, self.seconds / 60)
            self.skipped.append(name)
            return None
        if kind != "network":
            return variant
        cap = left / 60 if variant.train.max_minutes is None else min(left / 60, variant.train.max_minutes)
        log.info("%s: at most %.1f min of training (compare.time_budget)", name, cap)
        self.capped[name] = variant.with_overrides({"train.max_minutes": cap})
        return self.capped[name]
