"""Log lines as JSON objects (LOG_FORMAT=json) and the setting that chooses them."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from kiungo.config import ConfigError, Settings
from kiungo.runtime.log import JsonFormatter


def test_a_json_line_carries_the_message_the_extra_fields_and_the_exception() -> None:
    logger = logging.getLogger("kiungo.test")
    try:
        raise ValueError("boom")
    except ValueError:
        record = logger.makeRecord(
            "kiungo.test", logging.INFO, __file__, 1, "reject code=%s", ("F02",), sys.exc_info(),
            extra={"peer_id": "p-1", "code": "F02"},
        )  # fmt: skip
    entry = json.loads(JsonFormatter().format(record))
    assert entry["msg"] == "reject code=F02"
    assert entry["level"] == "info" and entry["logger"] == "kiungo.test"
    assert entry["peer_id"] == "p-1" and entry["code"] == "F02"
    assert "ValueError: boom" in entry["exc"]
    assert "args" not in entry and "msecs" not in entry


def test_log_format_defaults_to_json_in_production_and_is_checked() -> None:
    assert Settings.from_env({}).log_format == "text"
    production = {"NODE_ENV": "production", "STREAM_SECRET": "A" * 43 + "="}
    assert Settings.from_env(production).log_format == "json"
    assert Settings.from_env({"LOG_FORMAT": "JSON"}).log_format == "json"
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        Settings.from_env({"LOG_FORMAT": "xml"})
