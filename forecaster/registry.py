"""`Registry`: one extension point's names and implementations (cells, losses, metrics, output formats).

Each registry lives in the module that implements its entries, which registers them at import. Looking a name up
is a dict lookup; `add` refuses a name registered twice, so two entries can never shadow each other.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(dict[str, T], Generic[T]):
    """Names to implementations of one extension point (`what` names it in errors)."""

    def __init__(self, what: str):
        super().__init__()
        self.what = what

    def add(self, entry: T) -> T:
        """Register `entry` under its `name`; returns it."""
        name = entry.name  # type: ignore[attr-defined]
        if name in self:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self[name] = entry
        return entry
