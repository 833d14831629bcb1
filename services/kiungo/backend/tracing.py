"""The backend's spans (``ENABLE_TELEMETRY_TRACES``): one per GraphQL operation, one per
webhook delivery attempt. Called only when ``Backend.tracing`` is set.

GraphQL: span ``<type> <name>`` (``mutation createAsset``; an anonymous operation is named by
its root fields, ``query assets``), kind SERVER, with ``graphql.operation.type``,
``graphql.operation.name`` (named operations only), ``kiungo.graphql.fields`` (the root fields)
and ``kiungo.graphql.outcome`` (``ok`` or the first error's code, as the
``kiungo_graphql_requests_total`` label); status ERROR for ``INTERNAL_SERVER_ERROR``. The
document and variables are left out: mutations carry peer tokens and secrets inline.

Webhooks: span ``webhook.delivery``, kind CLIENT, per POST to ``WEBHOOK_URL``, with
``http.request.method``, ``url.full`` (without credentials or query), ``server.address``,
``server.port``, ``kiungo.webhook.event.id``, ``kiungo.webhook.event.type``,
``kiungo.webhook.attempt`` (1 for the first), ``http.response.status_code`` when answered, and
``error.type`` (the status code, ``timeout`` or the connection error's name) with status ERROR
when not delivered. The body (the event's data) is left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from graphql import DocumentNode, FieldNode, OperationDefinitionNode

from kiungo.runtime.telemetry import Tracing

if TYPE_CHECKING:
    from opentelemetry.trace import Span

__all__ = [
    "end_graphql_span",
    "end_webhook_span",
    "start_graphql_span",
    "start_webhook_span",
]


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        return operations[0] if len(operations) == 1 else None
    for operation in operations:
        if operation.name is not None and operation.name.value == name:
            return operation
    return None


def start_graphql_span(tracing: Tracing, document: DocumentNode, name: str | None) -> Span:
    """The span of the operation ``name`` (or the document's only one) about to run."""
    from opentelemetry.trace import SpanKind  # noqa: PLC0415

    operation = _operation(document, name)
    attributes: dict[str, str | Sequence[str]] = {}
    if operation is None:  # execution answers with the error
        title = "GraphQL"
    else:
        kind = operation.operation.value
        fields = [
            s.name.value for s in operation.selection_set.selections if isinstance(s, FieldNode)
        ]
        attributes["graphql.operation.type"] = kind
        attributes["kiungo.graphql.fields"] = fields
        if operation.name is not None:
            attributes["graphql.operation.name"] = operation.name.value
            title = f"{kind} {operation.name.value}"
        else:
            title = f"{kind} {' '.join(fields)}".rstrip()
    return tracing.tracer.start_span(title, kind=SpanKind.SERVER, attributes=attributes)


def end_graphql_span(span: Span | None, outcome: str) -> None:
    """End a GraphQL span with ``outcome`` (``ok`` or an error code); None: nothing."""
    if span is None:
        return
    from opentelemetry.trace import StatusCode  # noqa: PLC0415

    span.set_attribute("kiungo.graphql.outcome", outcome)
    if outcome == "INTERNAL_SERVER_ERROR":
        span.set_status(StatusCode.ERROR, outcome)
    span.end()


def start_webhook_span(tracing: Tracing, url: str, event: Mapping[str, Any]) -> Span:
    """The span of one POST of ``event`` (a ``webhook_events`` row) to ``url``."""
    from opentelemetry.trace import SpanKind  # noqa: PLC0415

    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    attributes: dict[str, str | int] = {
        "http.request.method": "POST",
        "url.full": urlunsplit((parts.scheme, netloc, parts.path, "", "")),
        "server.address": host,
        "server.port": port,
        "kiungo.webhook.event.id": str(event["id"]),
        "kiungo.webhook.event.type": str(event["type"]),
        "kiungo.webhook.attempt": int(event["attempts"]) + 1,
    }
    return tracing.tracer.start_span(
        "webhook.delivery", kind=SpanKind.CLIENT, attributes=attributes
    )


def end_webhook_span(span: Span | None, status: int | None, error: BaseException | None) -> None:
    """End a delivery's span: answered with ``status``, or failed with ``error``; None:
    nothing."""
    if span is None:
        return
    from opentelemetry.trace import StatusCode  # noqa: PLC0415

    if status is not None:
        span.set_attribute("http.response.status_code", status)
        if not 200 <= status < 300:
            span.set_attribute("error.type", str(status))
            span.set_status(StatusCode.ERROR, f"answered {status}")
    else:
        kind = "timeout" if isinstance(error, TimeoutError) else type(error).__name__
        span.set_attribute("error.type", kind)
        span.set_status(StatusCode.ERROR, kind)
    span.end()
