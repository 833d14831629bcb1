"""The backend's HTTP face: ``POST /graphql`` (signed), GraphiQL outside production,
``/livez``, ``/readyz``, ``/healthz`` and ``/metrics``.

Requests are authenticated before GraphQL sees them: with ``ADMIN_API_SECRET`` set, every
request needs a fresh, unused signature over its body (``kiungo.signatures``), else 401.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from inspect import isawaitable
from typing import Any

import asyncpg
import strawberry
from graphql import DocumentNode, ExecutionResult, GraphQLError, execute, parse, validate
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from strawberry.http.ides import get_graphql_ide_html

from kiungo.backend.api.tenants import is_operator_tenant
from kiungo.backend.context import Backend, Context
from kiungo.backend.errors import ApiError, ErrorCode
from kiungo.backend.metrics import BackendMetrics
from kiungo.backend.schema import MAX_TOKENS, RULES, build_schema
from kiungo.backend.tracing import end_graphql_span, start_graphql_span
from kiungo.runtime.health import health_routes
from kiungo.signatures import SignatureError, verify

__all__ = ["MAX_BODY_BYTES", "BackendMetrics", "create_app"]

log = logging.getLogger("kiungo.backend")

MAX_BODY_BYTES = 256 * 1024
_DOCUMENT_CACHE = 512


# Postgres stores no NUL in text or jsonb, and nothing encodes a lone surrogate as UTF-8: such
# strings are valid JSON and GraphQL, so they reach the stores, which refuse them.
_UNSTORABLE_TEXT = (
    UnicodeEncodeError,
    asyncpg.CharacterNotInRepertoireError,
    asyncpg.UntranslatableCharacterError,
)


def _unstorable_text(error: BaseException | None) -> bool:
    # asyncpg reports a parameter it cannot encode as its own DataError, caused by the
    # UnicodeEncodeError (a lone surrogate in a query's variable, say); other DataErrors are ours.
    return isinstance(error, _UNSTORABLE_TEXT) or (
        isinstance(error, asyncpg.DataError) and isinstance(error.__cause__, UnicodeEncodeError)
    )


def _not_json(constant: str) -> None:
    # Python's json reads NaN and Infinity, which are not JSON (and no JSON client sends).
    raise ValueError(f"{constant} is not JSON")


def _error(code: ErrorCode, message: str, status: int) -> JSONResponse:
    return JSONResponse(
        {"errors": [{"message": message, "extensions": {"code": code.value}}]}, status
    )


def _format(error: GraphQLError) -> tuple[dict[str, Any], bool]:
    """An error as the response carries it, and whether it is a request-level refusal."""
    original = error.original_error
    formatted: dict[str, Any] = {"message": error.message}
    if error.locations:
        formatted["locations"] = [
            {"line": loc.line, "column": loc.column} for loc in error.locations
        ]
    if error.path:
        formatted["path"] = error.path
    if isinstance(original, ApiError):
        formatted["message"] = original.message
        formatted["extensions"] = original.as_extensions()
        return formatted, False
    if error.path is None:
        # Parse, validation, variable coercion and limit errors: the request itself is wrong.
        formatted["extensions"] = {"code": ErrorCode.BAD_USER_INPUT.value}
        return formatted, True
    if _unstorable_text(original):
        # A string from the request that no store can hold; the statement was refused whole.
        formatted["message"] = "text may not contain NUL characters or unpaired surrogates"
        formatted["extensions"] = {"code": ErrorCode.BAD_USER_INPUT.value}
        return formatted, False
    log.error("unexpected error in %s", error.path, exc_info=original)
    formatted["message"] = "internal server error"
    formatted["extensions"] = {"code": ErrorCode.INTERNAL_SERVER_ERROR.value}
    return formatted, False


class GraphQLEndpoint:
    def __init__(
        self, backend: Backend, schema: strawberry.Schema, metrics: BackendMetrics
    ) -> None:
        self._backend = backend
        self._schema = schema
        self._metrics = metrics
        settings = backend.settings
        self._secret = settings.admin_api_secret
        self._ttl = settings.admin_api_signature_ttl_seconds
        self._replay_prefix = f"{settings.redis_key_prefix}admin-signature:"
        self._ide = None if settings.is_production else get_graphql_ide_html(graphql_ide="graphiql")
        self._graphql = schema._schema
        self._execution_context = schema.execution_context_class
        self._documents: OrderedDict[str, tuple[DocumentNode | None, list[GraphQLError]]] = (
            OrderedDict()
        )

    async def handle(self, request: Request) -> Response:
        if request.method == "GET":
            if self._ide is None:
                return _error(ErrorCode.FORBIDDEN, "GraphiQL is off in production", 404)
            return HTMLResponse(self._ide)
        started = time.perf_counter()
        response = await self._post(request)
        self._metrics.latency.observe(time.perf_counter() - started)
        return response

    async def _post(self, request: Request) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return self._refuse(
                ErrorCode.BAD_USER_INPUT, "Content-Type must be application/json", 415
            )
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
            return self._refuse(ErrorCode.BAD_USER_INPUT, "the request body is too large", 413)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                return self._refuse(ErrorCode.BAD_USER_INPUT, "the request body is too large", 413)
        try:
            payload = json.loads(body, parse_constant=_not_json)
        except (ValueError, UnicodeDecodeError):
            return self._refuse(ErrorCode.BAD_USER_INPUT, "the body is not JSON", 400)
        except RecursionError:
            nested = "the body's JSON is nested too deeply"
            return self._refuse(ErrorCode.BAD_USER_INPUT, nested, 400)
        if self._secret is not None:
            refusal = await self._authenticate(request, payload)
            if refusal is not None:
                return self._refuse(ErrorCode.UNAUTHENTICATED, refusal, 401)
        tenant = request.headers.get("tenant-id")
        if tenant is not None and not is_operator_tenant(
            self._backend.settings.operator_tenant_id, tenant
        ):
            # Rafiki's answer for a tenant-id it does not know; here only the operator's is.
            return self._refuse(ErrorCode.UNAUTHENTICATED, "Unauthorized", 401)
        if not isinstance(payload, dict):
            return self._refuse(ErrorCode.BAD_USER_INPUT, "the body must be a JSON object", 400)
        query = payload.get("query")
        variables = payload.get("variables")
        operation = payload.get("operationName")
        if not isinstance(query, str) or not query.strip():
            return self._refuse(ErrorCode.BAD_USER_INPUT, "the body has no query", 400)
        if variables is not None and not isinstance(variables, dict):
            return self._refuse(ErrorCode.BAD_USER_INPUT, "variables must be an object", 400)
        if operation is not None and not isinstance(operation, str):
            return self._refuse(ErrorCode.BAD_USER_INPUT, "operationName must be a string", 400)
        document, errors = self._document(query)
        tracing = self._backend.tracing
        span = (
            None
            if tracing is None or document is None
            else start_graphql_span(tracing, document, operation)
        )
        if document is None:
            result = ExecutionResult(None, errors)
        else:
            outcome = execute(
                self._graphql,
                document,
                context_value=Context(self._backend),
                variable_values=variables,
                operation_name=operation,
                executor_class=self._execution_context,
            )
            result = await outcome if isawaitable(outcome) else outcome
        out: dict[str, Any] = {"data": result.data}
        status = 200
        if result.errors:
            formatted = [_format(e) for e in result.errors]
            out["errors"] = [f for f, _ in formatted]
            if result.data is None and all(request_level for _, request_level in formatted):
                status = 400
            label = out["errors"][0]["extensions"]["code"]
        else:
            label = "ok"
        self._metrics.requests.labels(label).inc()
        end_graphql_span(span, label)
        return JSONResponse(out, status)

    def _document(self, query: str) -> tuple[DocumentNode | None, list[GraphQLError]]:
        """The parsed document, or why it cannot run; kept for the next request that sends
        the same text (clients send the same few queries over and over)."""
        cached = self._documents.get(query)
        if cached is not None:
            self._documents.move_to_end(query)
            return cached
        try:
            parsed = parse(query, max_tokens=MAX_TOKENS)
        except GraphQLError as error:
            entry: tuple[DocumentNode | None, list[GraphQLError]] = (None, [error])
        else:
            errors = validate(self._graphql, parsed, RULES)
            entry = (None, errors) if errors else (parsed, [])
        self._documents[query] = entry
        if len(self._documents) > _DOCUMENT_CACHE:
            self._documents.popitem(last=False)
        return entry

    def _refuse(self, code: ErrorCode, message: str, status: int) -> Response:
        self._metrics.requests.labels(code.value).inc()
        return _error(code, message, status)

    async def _authenticate(self, request: Request, payload: Any) -> str | None:
        assert self._secret is not None
        try:
            signature = verify(
                self._secret,
                request.headers.get("signature"),
                payload,
                ttl_seconds=self._ttl,
            )
        except SignatureError as exc:
            return str(exc)
        # One use per signature: a captured request cannot be sent again while still fresh.
        # Keyed on the digest alone, since the nonce is not signed: so identical twins signed
        # in the same millisecond are refused too (documented in the README, "Signatures").
        first = await self._backend.redis.set(
            self._replay_prefix + signature.digest, b"1", nx=True, ex=2 * self._ttl + 1
        )
        if not first:
            return "the signature was already used"
        return None


def create_app(backend: Backend, metrics: BackendMetrics | None = None) -> Starlette:
    metrics = metrics or BackendMetrics()
    graphql = GraphQLEndpoint(backend, build_schema(), metrics)

    async def render_metrics(request: Request) -> Response:
        return Response(await metrics.scrape(), media_type="text/plain; version=0.0.4")

    return Starlette(
        routes=[
            Route("/graphql", graphql.handle, methods=["GET", "POST"]),
            *health_routes(backend.pool, backend.redis, backend.ledger.readiness_probe()),
            Route("/metrics", render_metrics, methods=["GET"]),
        ]
    )
