"""kiungo demo: two nodes on this machine, one payment between them, everything shown.

Starts two complete nodes on loopback (:mod:`kiungo.demo_nodes`: connector, backend and
authorization server each, the latter with its development consent page; their own databases
on one Postgres and their own key prefixes on one Redis: the machine's from
DATABASE_URL/REDIS_URL, or embedded ones in a temporary directory), a rates service (1 USD =
0.9 EUR), and sets them up through their admin APIs exactly as an integrator would: node A
holds USD, node B holds USD and EUR; they are peered both ways in USD with liquidity; alice has
a wallet address on A, bob one on B in EUR. Then alice pays bob's incoming payment: a quote on
A (for what it expects, read from B over Open Payments, and a STREAM rate probe through both
connectors), an outgoing payment, funded, sent in many small STREAM packets (the peers' maximum
packet amount is kept small so that they show) while a progress bar follows it. It prints what
was sent and delivered, the rate, and both nodes' balances, and ends with one JSON line. Exit 0
when the payment completed with the exact amount.

With ``--open-payments`` alice's app makes the payment over Open Payments instead, its consent
given on A's consent page (:mod:`kiungo.demo_open_payments`); the progress bar and summary are
the same.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from kiungo.config import Settings
from kiungo.demo_nodes import QUOTE_FIELDS, DemoError, Node, Payment, two_nodes
from kiungo.demo_nodes import balances as nodes_balances
from kiungo.demo_open_payments import OpenPaymentsApp
from kiungo.models import OutgoingPaymentState
from kiungo.runtime.log import configure_logging
from kiungo.runtime.runner import run_service

__all__ = ["run"]


async def _pay_through_admin_apis(a: Node, b: Node, ids: dict[str, str], amount: int) -> Payment:
    incoming = await b.gql(
        "mutation($i: CreateIncomingPaymentInput!) { createIncomingPayment(input: $i)"
        " { payment { id } } }",
        {"i": {"walletAddressId": ids["bob"],
               "incomingAmount": {"value": str(amount), "assetCode": "EUR", "assetScale": 2},
               "metadata": {"description": "kiungo demo"}}},
    )  # fmt: skip
    payment_id = incoming["createIncomingPayment"]["payment"]["id"]
    receiver = f"{ids['bob_url']}/incoming-payments/{payment_id}"
    started = time.perf_counter()
    # No amount: A reads what bob's incoming payment still expects from B, over Open Payments.
    quote = (
        await a.gql(
            "mutation($i: CreateQuoteInput!) { createQuote(input: $i)"
            f" {{ quote {{ {QUOTE_FIELDS} }} }} }}",
            {"i": {"walletAddressId": ids["alice"], "receiver": receiver}},
        )
    )["createQuote"]["quote"]
    outgoing = (
        await a.gql(
            "mutation($i: CreateOutgoingPaymentInput!) { createOutgoingPayment(input: $i)"
            " { payment { id } } }",
            {"i": {"walletAddressId": ids["alice"], "quoteId": quote["id"]}},
        )
    )["createOutgoingPayment"]["payment"]["id"]
    await a.fund(outgoing)
    return Payment(payment_id, quote, outgoing, started)


async def _follow(a: Node, b: Node, payment: Payment, console: Console) -> dict[str, Any]:
    """Follow the funded payment to its end with a progress bar; what it sent and delivered."""
    debit = int(payment.quote["debitAmount"]["value"])
    state: str = OutgoingPaymentState.SENDING
    sent = 0
    with Progress(
        TextColumn("[bold]paying bob[/bold]"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} USD cents"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("pay", total=debit)
        deadline = time.monotonic() + 120
        unfinished = (OutgoingPaymentState.FUNDING, OutgoingPaymentState.SENDING)
        while state in unfinished and time.monotonic() < deadline:
            view = (
                await a.gql(
                    "query($id: String!) { outgoingPayment(id: $id) { state error"
                    " sentAmount { value } } }",
                    {"id": payment.outgoing_payment},
                )
            )["outgoingPayment"]
            state, sent = view["state"], int(view["sentAmount"]["value"])
            progress.update(task, completed=sent)
            if view["error"] and state == OutgoingPaymentState.FAILED:
                raise DemoError(f"the payment failed: {view['error']}")
            await asyncio.sleep(0.05)
    seconds = time.perf_counter() - payment.started
    received = (
        await b.gql(
            "query($id: String!) { incomingPayment(id: $id) { state receivedAmount { value } } }",
            {"id": payment.incoming_payment},
        )
    )["incomingPayment"]
    return {
        "quote": payment.quote,
        "state": state,
        "sent": sent,
        "debit": debit,
        "delivered": int(received["receivedAmount"]["value"]),
        "incoming_state": received["state"],
        "seconds": seconds,
    }


async def run_demo(
    settings: Settings,
    amount: int,
    console: Console,
    *,
    open_payments: bool = False,
    consent_in_browser: bool = False,
) -> dict[str, Any]:
    async with contextlib.AsyncExitStack() as stack:
        nodes = await stack.enter_async_context(two_nodes(settings, console))
        a, b, ids = nodes.a, nodes.b, nodes.ids
        app = None
        if open_payments:
            app = await stack.enter_async_context(
                OpenPaymentsApp.running(a, ids, nodes.redis, console, in_browser=consent_in_browser)
            )
            payment = await app.pay(ids["bob_url"], amount)
        else:
            payment = await _pay_through_admin_apis(a, b, ids, amount)
        result = await _follow(a, b, payment, console)
        balances = await nodes_balances(a, b, ids)
        record = None if app is None else await app.read_back()
    quote = result["quote"]
    console.print(
        f"sent      {result['sent'] / 100:.2f} USD of a quoted {result['debit'] / 100:.2f}\n"
        f"delivered {result['delivered'] / 100:.2f} EUR to bob (asked {amount / 100:.2f}),"
        f" incoming payment {result['incoming_state']}\n"
        f"rate      {quote['estimatedExchangeRate']} EUR per USD (quoted)\n"
        f"time      {result['seconds']:.2f} s"
    )
    for name, value in balances.items():
        console.print(f"  {name:<20} {value}")
    ok = result["state"] == OutgoingPaymentState.COMPLETED and result["delivered"] == amount
    summary = {
        "demo": "kiungo",
        "ok": ok,
        "state": result["state"],
        "sent": str(result["sent"]),
        "sent_asset": "USD",
        "delivered": str(result["delivered"]),
        "delivered_asset": "EUR",
        "asked": str(amount),
        "seconds": round(result["seconds"], 3),
        "balances": balances,
    }
    if record is not None:
        summary["open_payments"] = record
    return summary


def run(args: argparse.Namespace) -> int:
    """kiungo demo (its arguments: kiungo.commands)."""
    settings = Settings.from_env()
    configure_logging("WARNING")
    # URLs stay whole on one line (to be copied), however narrow the terminal.
    console = Console(stderr=True, soft_wrap=True)
    outcome: dict[str, Any] = {}
    if args.consent_in_browser and not args.open_payments:
        console.print("--consent-in-browser goes with --open-payments")
        return 2

    async def run() -> None:
        outcome.update(
            await run_demo(
                settings,
                args.amount,
                console,
                open_payments=args.open_payments,
                consent_in_browser=args.consent_in_browser,
            )
        )

    try:
        run_service(run())
    except DemoError as exc:
        print(json.dumps({"demo": "kiungo", "ok": False, "error": str(exc)}), flush=True)
        return 1
    print(json.dumps(outcome), flush=True)
    sys.stdout.flush()
    return 0 if outcome.get("ok") else 1
