"""A lifecycle as data: which state may follow which, as h11 keeps its connection states.

Each payment kind declares its :class:`Lifecycle` once (``payments/incoming``,
``payments/outgoing``); the store functions that change a payment's state ask it first, and the
tests walk every pair of states against the table.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Generic, TypeVar

__all__ = ["IllegalTransition", "Lifecycle"]

S = TypeVar("S", bound=enum.StrEnum)


class IllegalTransition(Exception):
    """A state change the lifecycle does not allow (a bug, or a race another writer won)."""

    def __init__(self, kind: str, old: str, new: str) -> None:
        super().__init__(f"{kind}: {old} → {new} is not allowed")
        self.kind = kind
        self.old = old
        self.new = new


class Lifecycle(Generic[S]):
    """The allowed transitions of one kind of payment."""

    def __init__(self, kind: str, states: type[S], transitions: Mapping[S, Iterable[S]]) -> None:
        self.kind = kind
        self.states = states
        self._next: dict[S, frozenset[S]] = {s: frozenset(transitions.get(s, ())) for s in states}
        unknown = {t for targets in self._next.values() for t in targets} - set(states)
        if unknown:
            raise ValueError(f"{kind}: transitions to unknown states {sorted(unknown)}")

    def allowed(self, old: S) -> frozenset[S]:
        """The states that may follow ``old`` (none: ``old`` is final)."""
        return self._next[old]

    def is_final(self, state: S) -> bool:
        return not self._next[state]

    def sources(self, new: S) -> frozenset[S]:
        """The states from which ``new`` may be reached: the ``WHERE state IN (...)`` guard
        of the statement that performs the transition, so a row another writer moved on is
        not changed."""
        return frozenset(s for s, targets in self._next.items() if new in targets)

    def check(self, old: S, new: S) -> None:
        """Raise :class:`IllegalTransition` unless ``old → new`` is allowed."""
        if new not in self._next[old]:
            raise IllegalTransition(self.kind, old.value, new.value)
