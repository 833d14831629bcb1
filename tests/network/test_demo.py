"""`kiungo demo` end to end: two nodes, one cross-currency payment, one JSON line, exit 0;
through the admin APIs, and with `--open-payments` as an Open Payments client app whose consent
is given on A's development consent page (by the demo as a browser, or by a browser the test
drives with `--consent-in-browser`)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from tests.process_output import CapturedOutput
from tests.tigerbeetle_server import require_tigerbeetle

KIUNGO = str(Path(sys.executable).parent / "kiungo")
# What the demo prints before it waits for the browser.
CONSENT = re.compile(r"^\s+consent\s+(http://\S+)\s*$")
# Styles, if the environment asks rich for them (FORCE_COLOR) even into a pipe.
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _env(postgres_server_url: str, redis_server_url: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": postgres_server_url, "REDIS_URL": redis_server_url}


async def _demo(env: dict[str, str], *options: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        KIUNGO, "demo", "--amount", "500", *options,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


def _summary(code: int | None, out: bytes, err: str) -> dict[str, Any]:
    """The JSON line of a demo that paid bob exactly what he asked."""
    err = ANSI.sub("", err)
    assert code == 0, err[-3000:]
    lines = out.decode().strip().splitlines()
    assert len(lines) == 1, lines
    summary: dict[str, Any] = json.loads(lines[0])
    assert summary["ok"] is True and summary["state"] == "COMPLETED"
    assert summary["delivered"] == "500" and summary["delivered_asset"] == "EUR"
    # ceil(500 / 0.9) USD cents, as quoted.
    assert summary["sent"] == "556" and summary["sent_asset"] == "USD"
    assert "paying bob" in err
    return summary


@pytest.mark.parametrize("ledger", ["postgres", "tigerbeetle"])
async def test_kiungo_demo_pays_across_two_nodes(
    postgres_server_url: str, redis_server_url: str, ledger: str
) -> None:
    env = _env(postgres_server_url, redis_server_url)
    if ledger == "tigerbeetle":
        # Each node runs a TigerBeetle replica of its own in a temporary directory.
        env |= {"USE_TIGERBEETLE": "true", "TIGERBEETLE_BIN": require_tigerbeetle()}
        env.pop("TIGERBEETLE_REPLICA_ADDRESSES", None)
    process = await _demo(env)
    async with asyncio.timeout(180):
        out, err = await process.communicate()
    summary = _summary(process.returncode, out, err.decode())
    assert "open_payments" not in summary


def _paid_over_open_payments(summary: dict[str, Any], consented_in: str) -> dict[str, Any]:
    """The Open Payments record of a demo run: the app's payment, its grant consented."""
    op: dict[str, Any] = summary["open_payments"]
    alice = op["client"]
    a = f"{urlsplit(alice).scheme}://{urlsplit(alice).netloc}"
    assert alice == f"{a}/alice"
    # The incoming payment on B, the quote and the outgoing payment on A, all Open Payments URLs.
    assert re.fullmatch(
        r"http://127\.0\.0\.1:\d+/incoming-payments/[0-9a-f-]{36}", op["incoming_payment"]
    )
    assert not op["incoming_payment"].startswith(a + "/")
    assert re.fullmatch(re.escape(a) + r"/quotes/[0-9a-f-]{36}", op["quote"])
    assert re.fullmatch(re.escape(a) + r"/outgoing-payments/[0-9a-f-]{36}", op["outgoing_payment"])
    # The grant, as A's admin API has it after the interaction: consented, limited to the
    # quote's debit amount and to bob's incoming payment.
    grant: dict[str, Any] = op["grant"]
    assert grant["state"] == "APPROVED" and grant["consented_in"] == consented_in, grant
    [access] = grant["access"]
    assert access["type"] == "outgoing-payment" and access["identifier"] == alice
    assert access["limits"]["receiver"] == op["incoming_payment"]
    debit = op["read_back"]["outgoing"]["debitAmount"]
    assert access["limits"]["debitAmount"] == {"value": debit["value"], "assetCode": "USD"}
    # Its interaction started at A's authorization server, under the interaction's id.
    auth = urlsplit(grant["consent_url"])
    assert auth.netloc != urlsplit(alice).netloc
    assert auth.path.split("/")[1:3] == ["interact", grant["interaction"]], grant
    # What the app reads back over Open Payments with its tokens.
    assert op["read_back"] == {
        "outgoing": {
            "sentAmount": {"value": "556", "assetCode": "USD", "assetScale": 2},
            "debitAmount": debit,
            "failed": False,
        },
        "incoming": {
            "receivedAmount": {"value": "500", "assetCode": "EUR", "assetScale": 2},
            "completed": True,
        },
    }
    return grant


async def test_kiungo_demo_pays_over_open_payments(
    postgres_server_url: str, redis_server_url: str
) -> None:
    """The demo is the browser: it follows the consent URL to A's consent page, accepts there,
    and follows the finish redirect back to the app."""
    process = await _demo(_env(postgres_server_url, redis_server_url), "--open-payments")
    async with asyncio.timeout(180):
        out, err = await process.communicate()
    summary = _summary(process.returncode, out, err.decode())
    grant = _paid_over_open_payments(summary, "demo")
    # The page it accepted on is A's consent page for that interaction.
    assert grant["consent_page"] == f"{grant['consent_url']}/consent", grant
    assert grant["consent_url"] in ANSI.sub("", err.decode())


async def test_kiungo_demo_waits_for_consent_in_a_browser(
    postgres_server_url: str, redis_server_url: str
) -> None:
    """With --consent-in-browser the demo prints the consent URL and waits; a browser (the
    test, following redirects with a cookie jar) accepts on the consent page and lands back
    at the app, which then pays."""
    process = await _demo(
        _env(postgres_server_url, redis_server_url), "--open-payments", "--consent-in-browser"
    )
    assert process.stderr is not None
    printed: list[str] = []
    async with asyncio.timeout(120):
        while (match := CONSENT.match(printed[-1] if printed else "")) is None:
            line = await process.stderr.readline()
            assert line, f"the demo ended before asking for consent: {''.join(printed)}"
            printed.append(ANSI.sub("", line.decode()))
    rest = CapturedOutput(process.stderr)
    consent_url = match.group(1)
    async with httpx.AsyncClient(follow_redirects=True, timeout=30) as browser:
        page = await browser.get(consent_url)
        assert page.status_code == 200 and "Accept" in page.text, page.text
        assert str(page.url) == f"{consent_url}/consent"
        back = await browser.post(str(page.url), data={"choice": "accept"})
        assert back.status_code == 200 and "Back at the app" in back.text, back.text
    async with asyncio.timeout(180):
        out = await process.stdout.read() if process.stdout else b""
        await process.wait()
    err = "".join(printed) + await rest.finish()
    summary = _summary(process.returncode, out, err)
    grant = _paid_over_open_payments(summary, "browser")
    assert grant["consent_url"] == consent_url and grant["consent_page"] is None


async def test_kiungo_demo_consent_in_browser_goes_with_open_payments() -> None:
    """Alone, --consent-in-browser is refused before anything starts."""
    process = await asyncio.create_subprocess_exec(
        KIUNGO, "demo", "--consent-in-browser",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode == 2 and out == b""
    assert "--consent-in-browser goes with --open-payments" in err.decode()
