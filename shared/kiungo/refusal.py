"""The base of every domain refusal: a request the domain turned down, with nothing written.

Each domain names its refusals as subclasses (``QuoteNotFound``, ``NotCancellable``); the edge
(the admin API, :func:`kiungo.backend.errors.refusals_as`) maps each kind to its code in one
table per resolver module.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = ["NotFound", "Refusal"]


class Refusal(Exception):
    """``message`` is for the caller; ``details`` go with it (the input at fault as ``field``,
    and what else helps). A refusal whose message never varies sets it on the class."""

    default_message: ClassVar[str] = ""

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = self.default_message if message is None else message
        super().__init__(self.message)
        self.details = details


class NotFound(Refusal):
    """No ``what`` has the id asked for."""

    what = "item"

    def __init__(self) -> None:
        super().__init__(f"{self.what} not found")
