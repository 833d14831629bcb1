"""Typed API errors: each failure the admin API reports carries one code (DESIGN §7).

Resolvers raise :class:`ApiError`; the HTTP layer puts its code in ``extensions.code``. Domain
modules raise a :class:`~kiungo.refusal.Refusal` of their own kind instead (shared by the
backend's domains and those in ``kiungo.payments``), which the resolver turns into an
``ApiError`` with :func:`refusals_as` and its table of codes. Anything else that escapes a
resolver is reported as ``INTERNAL_SERVER_ERROR`` with no detail, and logged.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator, Sequence
from typing import Any

from kiungo.refusal import NotFound, Refusal

__all__ = [
    "ApiError",
    "ErrorCode",
    "NotFound",
    "Refusal",
    "bad_input",
    "not_found",
    "refusals_as",
]


class ErrorCode(enum.StrEnum):
    BAD_USER_INPUT = "BAD_USER_INPUT"
    NOT_FOUND = "NOT_FOUND"
    DUPLICATE = "DUPLICATE"
    FORBIDDEN = "FORBIDDEN"
    CONFLICT = "CONFLICT"
    INACTIVE = "INACTIVE"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"


class ApiError(Exception):
    """A refusal with a code and a message a person understands; nothing was changed."""

    def __init__(self, code: ErrorCode, message: str, **extensions: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extensions = extensions

    def as_extensions(self) -> dict[str, Any]:
        return {"code": self.code.value, **self.extensions}


def bad_input(message: str, **extensions: Any) -> ApiError:
    return ApiError(ErrorCode.BAD_USER_INPUT, message, **extensions)


def not_found(what: str) -> ApiError:
    return ApiError(ErrorCode.NOT_FOUND, f"{what} not found")


@contextlib.contextmanager
def refusals_as(codes: Sequence[tuple[type[Refusal], ErrorCode]]) -> Iterator[None]:
    """Domain refusals raised inside as API errors: the code of the first kind the refusal is,
    its message and details unchanged."""
    try:
        yield
    except Refusal as error:
        code = next(
            (code for kind, code in codes if isinstance(error, kind)),
            ErrorCode.INTERNAL_SERVER_ERROR,
        )
        raise ApiError(code, error.message, **error.details) from None
