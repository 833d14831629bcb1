"""@interledger/pay (JavaScript) pays our STREAM receiver over ILP-over-HTTP."""

from __future__ import annotations

import base64
import os

import pytest
from tests.interop.node import node_script, run_script
from tests.interop.receiver_app import ReceiverNode
from tests.loopback import serve

from kiungo.stream.receipt import verify_receipt
from kiungo.stream.server import Asset

pytestmark = pytest.mark.interop


async def test_pay_pays_1000_split_by_f08_with_receipts_that_verify() -> None:
    node = ReceiverNode("test.kiungo.receiver", Asset("USD", 2), "peer-token", 300)
    nonce, secret = os.urandom(16), os.urandom(32)
    async with serve(node.app()) as url:
        status, result = await run_script(
            "pay.js",
            "--ilp-url", f"{url}/ilp",
            "--token", "peer-token",
            "--spsp-url", f"{url}/alice",
            "--amount", "1000",
            "--asset-code", "USD",
            "--asset-scale", "2",
            "--receipt-nonce", base64.b64encode(nonce).decode(),
            "--receipt-secret", base64.b64encode(secret).decode(),
        )  # fmt: skip
    assert status == 0, result
    assert result["amountSent"] == "1000"
    assert result["amountDelivered"] == "1000"
    assert result["destinationAsset"] == {"code": "USD", "scale": 2}
    assert node.by_tag == {"alice": 1000}
    assert result["quote"]["maxPacketAmount"] == "300"

    receipt = base64.b64decode(result["streamReceipt"])
    verified = verify_receipt(receipt, secret)
    assert (verified.nonce, verified.stream_id, verified.total_received) == (nonce, 1, 1000)
    async with node_script("receipt_verify.js") as js:
        theirs = await js.command(
            {
                "receipt_b64": result["streamReceipt"],
                "secret_b64": base64.b64encode(secret).decode(),
            }
        )
    assert theirs["ok"] is True
    assert theirs["totalReceived"] == "1000"


async def test_pay_with_a_wrong_token_is_refused_before_any_money_moves() -> None:
    node = ReceiverNode("test.kiungo.receiver", Asset("USD", 2), "peer-token", 300)
    async with serve(node.app()) as url:
        status, result = await run_script(
            "pay.js",
            "--ilp-url", f"{url}/ilp",
            "--token", "not-the-token",
            "--spsp-url", f"{url}/alice",
            "--amount", "1000",
            "--asset-code", "USD",
            "--asset-scale", "2",
        )  # fmt: skip
    assert status == 1
    assert result["ok"] is False
    assert node.total_received == 0
