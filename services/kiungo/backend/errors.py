"""Typed API errors: each failure the admin API reports carries one code (DESIGN §7).

Domain code raises :class:`ApiError`; the HTTP layer puts its code in ``extensions.code``. Anything
else that escapes a resolver is reported as ``INTERNAL_SERVER_ERROR`` with no detail, and logged.
"""

from __future__ import annotations

import enum
from typing import Any

__all__ = ["ApiError", "ErrorCode", "bad_input", "not_found"]


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
