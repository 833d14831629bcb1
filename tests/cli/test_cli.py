"""The ``kiungo`` command line: packet decode/encode and receipt verify/decode.

The first tests run the installed console script in a subprocess, as a user would; the rest call
``main`` in-process, which is faster and sees the same parser and handlers.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.stores import DatabaseFactory
from tests.vectors import load_vector

from kiungo.cli import main

KIUNGO = Path(sys.executable).parent / "kiungo"

ILP_VECTORS: list[dict[str, Any]] = load_vector("ilp_packets.json")["vectors"]
PREPARE = next(v for v in ILP_VECTORS if v["name"] == "ilp-packet ilp_prepare example01")
REJECT = next(v for v in ILP_VECTORS if v["name"] == "ilp-packet ilp_reject example01")
E2E: dict[str, Any] = load_vector("stream_e2e_prepare.json")
E2E_SECRET = base64.b64encode(
    bytes.fromhex(E2E["in_source"]["expected_shared_secret_hex"])
).decode()
RECEIPT: dict[str, Any] = load_vector("stream_receipts.json")["vectors"][0]
RECEIPT_SECRET = base64.b64encode(bytes.fromhex(RECEIPT["receipt_secret_hex"])).decode()


def kiungo(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KIUNGO), *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


# The console script


def test_script_decodes_a_vector_prepare_to_json() -> None:
    result = kiungo("packet", "decode", PREPARE["hex"])
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "type": 12,
        "amount": "107",
        "expiresAt": "2017-12-23T01:21:40.549Z",
        "executionCondition": PREPARE["fields"]["executionCondition_hex"],
        "destination": "example.alice",
        "data": PREPARE["fields"]["data_hex"],
    }


def test_script_encodes_decoded_json_back_to_the_same_bytes() -> None:
    decoded = kiungo("packet", "decode", PREPARE["hex"]).stdout
    result = kiungo("packet", "encode", "-", stdin=decoded)
    assert result.returncode == 0, result.stderr
    assert result.stdout == PREPARE["hex"] + "\n"


def test_script_decode_with_secret_opens_the_stream_packet() -> None:
    result = kiungo("packet", "decode", "--secret", E2E_SECRET, E2E["in_source"]["prepare_hex"])
    assert result.returncode == 0, result.stderr
    decoded = json.loads(result.stdout)
    expected = E2E["derived"]["stream_packet"]
    assert decoded["fulfillable"] is True
    assert decoded["stream"] == {
        "sequence": expected["sequence"],
        "packetType": expected["packetType"],
        "amount": expected["prepareAmount"],
        "frames": expected["frames"],
    }


def test_script_receipt_verify_accepts_the_vector_receipt_with_status_0() -> None:
    result = kiungo("receipt", "verify", "--secret", RECEIPT_SECRET, RECEIPT["receipt_base64"])
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "valid": True,
        "version": 1,
        "nonce": RECEIPT["receipt_nonce_hex"],
        "streamId": 1,
        "totalReceived": "500",
    }


def test_script_receipt_verify_refuses_another_secret_with_status_1() -> None:
    other_secret = base64.b64encode(b"\x01" * 32).decode()
    result = kiungo("receipt", "verify", "--secret", other_secret, RECEIPT["receipt_base64"])
    assert result.returncode == 1
    assert json.loads(result.stdout) == {"valid": False, "error": "invalid hmac"}


def test_script_bad_hex_exits_2_with_one_line_and_no_traceback() -> None:
    result = kiungo("packet", "decode", "0c6g")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == "kiungo: error: PACKET: 'g' is not a hex digit\n"


def test_script_undecodable_packet_exits_2_with_no_traceback() -> None:
    result = kiungo("packet", "decode", PREPARE["hex"][:-2])
    assert result.returncode == 2
    assert result.stderr.startswith("kiungo: error: not an ILP packet: ")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


# main() in-process


def test_decode_reads_hex_from_stdin_ignoring_whitespace(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spaced = " ".join(REJECT["hex"][i : i + 8] for i in range(0, len(REJECT["hex"]), 8))
    monkeypatch.setattr(sys, "stdin", io.StringIO(spaced + "\n"))
    status, out, _ = run(capsys, "packet", "decode", "-")
    assert status == 0
    assert json.loads(out)["message"] == "missing destination. ledger=example.us."


def test_decode_reads_base64_with_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    as_base64 = base64.b64encode(bytes.fromhex(REJECT["hex"])).decode()
    status, out, _ = run(capsys, "packet", "decode", "--base64", as_base64)
    assert status == 0
    assert json.loads(out)["code"] == "F01"


def test_decode_with_the_wrong_secret_reports_a_stream_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    other_secret = base64.b64encode(bytes(32)).decode()
    status, out, _ = run(
        capsys, "packet", "decode", "--secret", other_secret, E2E["in_source"]["prepare_hex"]
    )
    decoded = json.loads(out)
    assert status == 0
    assert decoded["fulfillable"] is False
    assert "stream" not in decoded
    assert decoded["stream_error"] == "data does not authenticate with this key"


def test_decode_accepts_a_url_safe_unpadded_secret(capsys: pytest.CaptureFixture[str]) -> None:
    url_safe = E2E_SECRET.replace("+", "-").replace("/", "_").rstrip("=")
    status, out, _ = run(
        capsys, "packet", "decode", "--secret", url_safe, E2E["in_source"]["prepare_hex"]
    )
    assert status == 0
    assert json.loads(out)["fulfillable"] is True


def test_encode_with_secret_seals_the_stream_object_into_a_fulfillable_prepare(
    capsys: pytest.CaptureFixture[str],
) -> None:
    stream = {
        "sequence": "1",
        "packetType": 12,
        "amount": "9",
        "frames": [{"type": 17, "name": "StreamMoney", "streamId": "1", "shares": "1"}],
    }
    prepare = {
        "type": "prepare",
        "amount": "10",
        "expiresAt": "2030-01-01T00:00:00.000Z",
        "destination": "test.peerB.x",
        "stream": stream,
    }
    status, out, err = run(capsys, "packet", "encode", "--secret", E2E_SECRET, json.dumps(prepare))
    assert status == 0, err
    status, out, _ = run(capsys, "packet", "decode", "--secret", E2E_SECRET, out)
    decoded = json.loads(out)
    assert decoded["fulfillable"] is True
    assert decoded["stream"] == stream


def test_encode_of_a_stream_object_without_secret_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, err = run(
        capsys, "packet", "encode", json.dumps({"type": 13, "fulfillment": "00" * 32, "stream": {}})
    )
    assert (status, out) == (2, "")
    assert err == 'kiungo: error: a "stream" object needs --secret to be encrypted into "data"\n'


def test_encode_of_bad_json_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "packet", "encode", "{'type': 12}")
    assert (status, out) == (2, "")
    assert err.startswith("kiungo: error: JSON: ")


def test_encode_of_an_invalid_field_exits_2_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(
        capsys, "packet", "encode", json.dumps({"type": 13, "fulfillment": "abcd"})
    )
    assert status == 2
    assert err == ("kiungo: error: fulfillment: must be 32 bytes (64 hex digits), got 2 bytes\n")


def test_hex_secret_is_refused_with_a_hint(capsys: pytest.CaptureFixture[str]) -> None:
    hex_secret = E2E["in_source"]["expected_shared_secret_hex"]
    status, _, err = run(capsys, "packet", "decode", "--secret", hex_secret, PREPARE["hex"])
    assert status == 2
    assert "give it in base64" in err


def test_receipt_decode_prints_fields_without_checking_the_hmac(
    capsys: pytest.CaptureFixture[str],
) -> None:
    forged = bytes.fromhex(RECEIPT["hmac_message_hex"]) + bytes(32)
    status, out, _ = run(capsys, "receipt", "decode", base64.b64encode(forged).decode())
    assert status == 0
    assert json.loads(out) == {
        "version": 1,
        "nonce": RECEIPT["receipt_nonce_hex"],
        "streamId": 1,
        "totalReceived": "500",
    }


def test_receipt_verify_of_a_short_receipt_is_invalid_with_status_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    short = base64.b64encode(bytes.fromhex(RECEIPT["receipt_hex"])[:57]).decode()
    status, out, _ = run(capsys, "receipt", "verify", "--secret", RECEIPT_SECRET, short)
    assert status == 1
    assert json.loads(out)["valid"] is False
    assert json.loads(out)["error"].startswith("receipt malformed")


def test_receipt_that_is_not_base64_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "receipt", "decode", "not base64!")
    assert status == 2
    assert err == "kiungo: error: RECEIPT: not valid base64\n"


def test_usage_error_returns_2_rather_than_exiting(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "packet", "decode")
    assert status == 2
    assert "the following arguments are required: PACKET" in err


@pytest.mark.parametrize(
    ("command", "says"),
    [
        (("packet", "decode"), ["hex", "base64", '"executionCondition": <32 bytes hex>']),
        (
            ("packet", "encode"),
            ['StreamData "data" and StreamReceipt "receipt" are base64', '"data": <hex>'],
        ),
        (("receipt", "verify"), ["base64", "<16 bytes hex>"]),
    ],
)
def test_help_says_which_fields_are_hex_and_which_base64(
    capsys: pytest.CaptureFixture[str], command: tuple[str, ...], says: list[str]
) -> None:
    status, out, _ = run(capsys, *command, "--help")
    assert status == 0
    for text in says:
        assert text in out


async def test_database_commands_need_no_stream_secret_in_production(
    make_database: DatabaseFactory,
) -> None:
    """`kiungo migrate` and `kiungo ledger check` (a Kubernetes Job, an operator's shell) touch
    only the database: production needs DATABASE_URL from them, not STREAM_SECRET."""
    env = {**os.environ, "NODE_ENV": "production", "DATABASE_URL": await make_database()}
    env.pop("STREAM_SECRET", None)

    async def run(*args: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            str(KIUNGO), *args, env=env, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        async with asyncio.timeout(120):
            _, stderr = await process.communicate()
        return int(process.returncode or 0), stderr.decode()

    for args in (["migrate"], ["ledger", "check"]):
        code, stderr = await run(*args)
        assert code == 0, (args, stderr)
    env["DATABASE_URL"] = "not a url"
    code, stderr = await run("migrate")
    assert code != 0 and "DATABASE_URL" in stderr


async def test_processes_counts_a_node_cannot_run_are_refused_in_one_line() -> None:
    """`--processes` below 1, or above 1 on embedded engines (each process would start its own
    Postgres and Redis), stops both services at once with one line and exit status 2."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    for service in ("connector", "backend"):
        for count, expected in (("0", "at least 1"), ("2", "DATABASE_URL and REDIS_URL")):
            process = await asyncio.create_subprocess_exec(
                str(KIUNGO), service, "--processes", count, env=env,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            async with asyncio.timeout(60):
                _, stderr = await process.communicate()
            lines = stderr.decode().strip().splitlines()
            assert process.returncode == 2, (service, count, lines)
            assert len(lines) == 1 and expected in lines[0], (service, count, lines)
