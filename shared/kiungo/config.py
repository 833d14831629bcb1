"""The node's settings: one typed, immutable object read from the environment.

Variable names are Rafiki's backend names (``packages/backend/src/config/app.ts``) wherever Rafiki
has one, so an operator moving over keeps their deployment files; the few Kiungo-only ones say so.
Every value is checked here, at start-up: a malformed one raises :class:`ConfigError` with one line
that names the variable, instead of failing later in the middle of a packet.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

from kiungo import config_values as values
from kiungo.config_values import Environment

__all__ = [
    "RAFIKI_VARIABLES",
    "ConfigError",
    "Environment",
    "Settings",
    "unused_rafiki_variables",
    "warn_unused_rafiki_variables",
]

log = logging.getLogger("kiungo.config")

_T = TypeVar("_T")


# Every variable Rafiki's backend and auth server read (packages/backend/src/config/app.ts and
# packages/auth/src/config/app.ts; JEST_WORKER_ID, a test runner's, left out). The ones Settings
# does not read are ignored here, and a service says so at start (warn_unused_rafiki_variables):
# an operator moving a Rafiki environment file sees what no longer has an effect.
RAFIKI_VARIABLES = frozenset(
    {
        "ACCESS_TOKEN_DELETION_DAYS", "ACCESS_TOKEN_EXPIRY_SECONDS", "ADMIN_API_SECRET",
        "ADMIN_API_SIGNATURE_TTL_SECONDS", "ADMIN_API_SIGNATURE_VERSION", "ADMIN_PORT",
        "AUTH_DATABASE_URL", "AUTH_PORT", "AUTH_SERVER_GRANT_URL",
        "AUTH_SERVER_INTROSPECTION_URL", "AUTH_SERVER_URL", "AUTH_SERVICE_API_URL",
        "AUTO_PEERING_SERVER_PORT", "CONNECTOR_PORT", "COOKIE_KEY", "DATABASE_CLEANUP_WORKERS",
        "DATABASE_URL", "DB_ENCRYPTION_SECRET", "ENABLE_AUTO_PEERING",
        "ENABLE_ILP_TIMING_TELEMETRY", "ENABLE_MANUAL_MIGRATIONS",
        "ENABLE_PARTIAL_PAYMENT_DECISION", "ENABLE_SPSP_PAYMENT_POINTERS", "ENABLE_TELEMETRY",
        "ENABLE_TELEMETRY_TRACES", "ENV_FILE", "EXCHANGE_RATES_LIFETIME", "EXCHANGE_RATES_URL",
        "GRAPHQL_IDEMPOTENCY_KEY_LOCK_MS", "GRAPHQL_IDEMPOTENCY_KEY_TTL_MS",
        "IDENTITY_SERVER_SECRET", "IDENTITY_SERVER_URL", "ILP_ADDRESS", "ILP_CONNECTOR_URL",
        "INCOMING_PAYMENT_CREATED_POLL_FREQUENCY_MS", "INCOMING_PAYMENT_CREATED_POLL_TIMEOUT_MS",
        "INCOMING_PAYMENT_EXPIRY_MAX_MS", "INCOMING_PAYMENT_INTERACTION",
        "INCOMING_PAYMENT_WORKERS", "INCOMING_PAYMENT_WORKER_IDLE", "INSTANCE_NAME",
        "INTERACTION_COOKIE_SAME_SITE", "INTERACTION_EXPIRY_SECONDS", "INTERACTION_PORT",
        "INTROSPECTION_PORT", "KEY_ID", "LIST_ALL_ACCESS_INTERACTION", "LIVENET",
        "LOCAL_CACHE_DURATION_MS", "LOG_LEVEL", "MAX_OUTGOING_PAYMENT_RETRY_ATTEMPTS",
        "NODE_ENV", "OPEN_PAYMENTS_PORT", "OPEN_PAYMENTS_URL", "OPEN_TELEMETRY_COLLECTOR_URLS",
        "OPEN_TELEMETRY_EXPORT_INTERVAL", "OPEN_TELEMETRY_TRACE_COLLECTOR_URLS",
        "OPERATOR_TENANT_ID", "OUTGOING_PAYMENT_WORKERS", "OUTGOING_PAYMENT_WORKER_IDLE",
        "PARTIAL_PAYMENT_DECISION_MAX_WAIT_MS", "PARTIAL_PAYMENT_DECISION_SAFETY_MARGIN_MS",
        "POLL_INCOMING_PAYMENT_CREATED_WEBHOOK", "PRIVATE_KEY_FILE", "QUOTE_INTERACTION",
        "QUOTE_LIFESPAN", "REDIS_TLS_CA_FILE_PATH", "REDIS_TLS_CERT_FILE_PATH",
        "REDIS_TLS_KEY_FILE_PATH", "REDIS_URL", "SEND_TENANT_WEBHOOKS_TO_OPERATOR",
        "SERVICE_API_PORT", "SIGNATURE_SECRET", "SIGNATURE_VERSION", "SLIPPAGE", "STREAM_SECRET",
        "TELEMETRY_EXCHANGE_RATES_LIFETIME", "TELEMETRY_EXCHANGE_RATES_URL",
        "TIGERBEETLE_CLUSTER_ID", "TIGERBEETLE_REPLICA_ADDRESSES",
        "TIGERBEETLE_TWO_PHASE_TIMEOUT_SECONDS", "TRUST_PROXY", "USE_TIGERBEETLE", "WAIT_SECONDS",
        "WALLET_ADDRESS_DEACTIVATION_PAYMENT_GRACE_PERIOD_MS", "WALLET_ADDRESS_LOOKUP_TIMEOUT_MS",
        "WALLET_ADDRESS_NOT_FOUND_POLLING_ENABLED", "WALLET_ADDRESS_POLLING_FREQUENCY_MS",
        "WALLET_ADDRESS_REDIRECT_HTML_PAGE", "WALLET_ADDRESS_URL", "WALLET_ADDRESS_WORKERS",
        "WALLET_ADDRESS_WORKER_IDLE", "WEBHOOK_MAX_RETRY", "WEBHOOK_TIMEOUT", "WEBHOOK_URL",
        "WEBHOOK_WORKERS", "WEBHOOK_WORKER_IDLE", "WITHDRAWAL_THROTTLE_DELAY",
    }
)  # fmt: skip


class ConfigError(ValueError):
    """A setting the node cannot run with; the message is one line naming the variable."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the connector and the backend are configured with.

    Build it with :meth:`from_env`; the defaults are those of a development node on loopback.
    Secrets and URLs that may hold a password are left out of ``repr``, so logging this is safe.
    """

    env: Environment = Environment.DEVELOPMENT
    """``NODE_ENV`` (Rafiki's name): development, test or production."""
    log_level: str = "INFO"
    """``LOG_LEVEL``: a Python logging level name; pino's ``trace``/``warn``/``fatal`` also read."""
    log_format: str = "text"
    """``LOG_FORMAT`` (Kiungo's own): ``text`` or ``json`` (one object per line, with packet and
    payment ids as fields); ``json`` by default in production."""

    database_url: str | None = dataclasses.field(default=None, repr=False)
    """``DATABASE_URL``: ``postgresql://...``; unset starts the embedded Postgres (DESIGN §5)."""
    redis_url: str | None = dataclasses.field(default=None, repr=False)
    """``REDIS_URL``: ``redis://``, ``rediss://`` or ``unix://``; unset, the embedded Redis."""
    data_dir: Path = dataclasses.field(default_factory=lambda: values.default_data_dir(os.environ))
    """``KIUNGO_DATA_DIR`` (Kiungo's own): where the embedded engines keep their files."""
    use_tigerbeetle: bool = False
    """``USE_TIGERBEETLE``: keep balances and transfers in TigerBeetle instead of Postgres
    (README, "TigerBeetle"); Postgres still holds everything else."""
    tigerbeetle_cluster_id: int = 0
    """``TIGERBEETLE_CLUSTER_ID``: the TigerBeetle cluster's id (u128)."""
    tigerbeetle_replica_addresses: str | None = None
    """``TIGERBEETLE_REPLICA_ADDRESSES``: the replicas' ``host:port``, comma-separated; unset
    with USE_TIGERBEETLE, ``kiungo up`` starts a single replica in KIUNGO_DATA_DIR."""

    ilp_address: str = "test.kiungo"
    """``ILP_ADDRESS``: this node's ILP address (RFC 15), the prefix of every address it serves."""
    stream_secret: bytes | None = dataclasses.field(default=None, repr=False)
    """``STREAM_SECRET``: 32 bytes in base64, the STREAM server secret every replica shares.

    Unset is allowed outside production only; the node then makes one for the run."""
    connector_port: int = 3002
    """``CONNECTOR_PORT``: ILP over HTTP from peers and SPSP."""
    ilp_connector_url: str = "http://127.0.0.1:3002"
    """``ILP_CONNECTOR_URL``: where this node's connector is reached (by peers and the backend)."""
    max_packet_amount: int | None = None
    """``MAX_PACKET_AMOUNT`` (Kiungo's own): u64 limit for peers that set none; unset, none."""
    redis_key_prefix: str = "kiungo:"
    """``REDIS_KEY_PREFIX`` (Kiungo's own): every Redis key of this node starts with it, so
    several nodes can share one Redis."""
    peer_rate_limit: int | None = None
    """``PEER_RATE_LIMIT`` (Kiungo's own): packets per second each peer may send (T05 beyond);
    unset, no limit. Shared by all replicas through Redis."""
    peer_throughput_limit: int | None = None
    """``PEER_THROUGHPUT_LIMIT`` (Kiungo's own): amount per second each peer may send, in its
    asset's units (T04 beyond); unset, no limit. Only fulfilled packets count: a rejected one
    gives its amount back."""
    packet_timeout_ms: int = 30_000
    """``PACKET_TIMEOUT_MS`` (Kiungo's own): the longest a forwarded Prepare may be held."""

    admin_port: int = 3001
    """``ADMIN_PORT``: the GraphQL admin API."""
    admin_api_secret: str | None = dataclasses.field(default=None, repr=False)
    """``ADMIN_API_SECRET``: HMAC key of admin request signatures; unset binds to loopback only."""
    admin_api_signature_ttl_seconds: int = 30
    """``ADMIN_API_SIGNATURE_TTL_SECONDS``: how old a signed admin request may be."""
    graphql_idempotency_key_ttl_ms: int = 86_400_000
    """``GRAPHQL_IDEMPOTENCY_KEY_TTL_MS``: how long a mutation's idempotency key is remembered."""

    open_payments_url: str = "http://127.0.0.1:3002"
    """``OPEN_PAYMENTS_URL``: public base URL under which wallet addresses are created."""
    operator_tenant_id: str = "00000000-0000-0000-0000-000000000000"
    """``OPERATOR_TENANT_ID``: the id of this single-tenant node's one tenant, the operator's
    (Rafiki's setting): the admin API takes it wherever Rafiki takes a tenant id, and refuses
    any other."""
    wallet_address_url: str = "http://127.0.0.1:3002/.well-known/pay"
    """``WALLET_ADDRESS_URL``: this node's own wallet address; defaults under OPEN_PAYMENTS_URL."""
    key_id: str | None = None
    """``KEY_ID``: the key id under which this node's own Open Payments client key is published
    (at WALLET_ADDRESS_URL/jwks.json) and signs its requests to other nodes; unset, the key's
    RFC 7638 thumbprint."""
    private_key_file: Path | None = None
    """``PRIVATE_KEY_FILE``: this node's Open Payments client key, an Ed25519 PKCS#8 PEM file
    (as Rafiki's). Unset, the key is derived from STREAM_SECRET (so every process of the node
    holds the same one), or made for the run when that is unset too (development only)."""
    auth_server_grant_url: str = "http://127.0.0.1:3006"
    """``AUTH_SERVER_GRANT_URL``: the Open Payments authorization server's grant endpoint, which
    wallet address documents name as ``authServer`` (their ``resourceServer`` is
    OPEN_PAYMENTS_URL, as Rafiki's)."""
    auth_port: int = 3006
    """``AUTH_PORT``: where ``kiungo auth`` (the GNAP authorization server) listens; it serves
    at the root of AUTH_SERVER_GRANT_URL, which a proxy maps to this port."""
    access_token_expiry_seconds: int = 600
    """``ACCESS_TOKEN_EXPIRY_SECONDS``: the lifetime of a GNAP access token."""
    identity_server_url: str | None = None
    """``IDENTITY_SERVER_URL``: the operator's identity provider, where the authorization
    server sends the account holder's browser to consent to an interactive grant (with
    ``interactId``, ``nonce``, ``clientName`` and ``clientUri`` in its query), as Rafiki does.
    Unset: interactive grants are refused."""
    identity_server_secret: str | None = dataclasses.field(default=None, repr=False)
    """``IDENTITY_SERVER_SECRET``: what the identity provider sends as ``x-idp-secret`` to the
    interaction API (``GET /grant/{id}/{nonce}``, ``POST /grant/{id}/{nonce}/accept|reject``).
    Unset: the interaction API refuses every call."""
    interaction_expiry_seconds: int = 600
    """``INTERACTION_EXPIRY_SECONDS``: how long the account holder has to consent."""
    enable_auto_peering: bool = False
    """``ENABLE_AUTO_PEERING``: the backend also serves Rafiki's auto-peering endpoint (``POST /``
    on AUTO_PEERING_SERVER_PORT), where another node makes itself a peer of this one."""
    auto_peering_server_port: int = 3005
    """``AUTO_PEERING_SERVER_PORT``: where the auto-peering endpoint listens (Rafiki's 3005)."""

    exchange_rates_url: str | None = None
    """``EXCHANGE_RATES_URL``: the operator's rates endpoint (``GET ?base=USD``); unset, same
    currency only."""
    exchange_rates_lifetime_ms: int = 15_000
    """``EXCHANGE_RATES_LIFETIME``: how long fetched rates are reused, in milliseconds."""
    slippage: Decimal = Decimal("0.01")
    """``SLIPPAGE``: the fraction below the quoted rate a payment still accepts, in [0, 1)."""
    quote_lifespan_ms: int = 300_000
    """``QUOTE_LIFESPAN``: how long a quote stays valid, in milliseconds."""
    incoming_payment_expiry_max_ms: int = 2_592_000_000
    """``INCOMING_PAYMENT_EXPIRY_MAX_MS``: the latest expiry an incoming payment may ask for."""
    max_outgoing_payment_retry_attempts: int = 5
    """``MAX_OUTGOING_PAYMENT_RETRY_ATTEMPTS``: tries before an outgoing payment ends FAILED."""
    outgoing_payment_attempt_timeout_ms: int = 120_000
    """``OUTGOING_PAYMENT_ATTEMPT_TIMEOUT_MS`` (Kiungo's own): the longest one attempt of an
    outgoing payment may send (resolving the receiver, probing, paying); then it stops, its
    packets in flight finish, and it is retried or FAILED like any failed attempt."""
    receiver_fetch_timeout_ms: int = 5_000
    """``RECEIVER_FETCH_TIMEOUT_MS`` (Kiungo's own): the longest one read of a receiver (its
    SPSP answer, its incoming payment's JSON) may take in total, however it trickles."""
    refuse_private_receivers: bool = False
    """``REFUSE_PRIVATE_RECEIVERS`` (Kiungo's own): ``true`` refuses receivers whose host
    resolves to a loopback, private, link-local (cloud metadata) or otherwise non-public
    address, checked on the address connected to; on by default in production only."""

    webhook_url: str | None = None
    """``WEBHOOK_URL``: where webhook events are POSTed; unset, events are kept but not sent."""
    webhook_timeout_ms: int = 2_000
    """``WEBHOOK_TIMEOUT``: how long one delivery may take, in milliseconds."""
    webhook_max_retry: int = 10
    """``WEBHOOK_MAX_RETRY``: delivery attempts before an event is given up."""
    signature_secret: str | None = dataclasses.field(default=None, repr=False)
    """``SIGNATURE_SECRET``: HMAC key webhook requests are signed with; unset, unsigned."""
    webhook_retry_backoff_ms: int = 10_000
    """``WEBHOOK_RETRY_BACKOFF_MS`` (Kiungo's own): the wait after a failed delivery, times the
    attempts so far (at most six times): 10 s, 20 s, ... 60 s by default, as Rafiki's."""
    worker_interval_ms: int = 1_000
    """``WORKER_INTERVAL_MS`` (Kiungo's own): how often idle backend workers look for work
    (expired incoming payments, Web Monetization events, liquidity alerts, webhooks)."""
    telemetry_traces: bool = False
    """``ENABLE_TELEMETRY_TRACES``: export OpenTelemetry traces (a span per ILP packet, GraphQL
    operation and webhook delivery attempt) over OTLP/HTTP; off, no tracing work is done."""
    telemetry_trace_urls: tuple[str, ...] = ()
    """``OPEN_TELEMETRY_TRACE_COLLECTOR_URLS``, or else ``OPEN_TELEMETRY_COLLECTOR_URLS``
    (Rafiki's metrics collectors; Kiungo exports no OpenTelemetry metrics): the OTLP/HTTP
    collectors traces go to, comma-separated; a URL with no path gets ``/v1/traces``. No
    default (Rafiki's sends to the Interledger Foundation's collector): required with traces on."""

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, serving: bool = True
    ) -> Settings:
        """Read the settings from ``environ`` (``os.environ`` when not given).

        An empty variable counts as unset. Raises :class:`ConfigError` for the first bad value.
        ``serving=False`` is for the commands that only touch the database (``kiungo migrate``,
        ``kiungo ledger``): they need no STREAM_SECRET, even in production.
        """
        env_vars = os.environ if environ is None else environ
        read = _Reader(env_vars)
        env = read.env()
        connector_port = read.value("CONNECTOR_PORT", values.port, cls.connector_port)
        open_payments_url = read.value("OPEN_PAYMENTS_URL", values.http_url, cls.open_payments_url)
        stream_secret = read.value("STREAM_SECRET", values.secret, None)
        if stream_secret is None and env is Environment.PRODUCTION and serving:
            raise ConfigError("STREAM_SECRET: must be set in production (32 bytes, base64)")
        telemetry_traces = read.value(
            "ENABLE_TELEMETRY_TRACES", values.boolean, cls.telemetry_traces
        )
        no_urls: tuple[str, ...] = ()
        collector_urls = read.value("OPEN_TELEMETRY_COLLECTOR_URLS", values.http_urls, no_urls)
        trace_urls = read.value(
            "OPEN_TELEMETRY_TRACE_COLLECTOR_URLS", values.http_urls, collector_urls
        )
        if telemetry_traces and not trace_urls:
            raise ConfigError(
                "OPEN_TELEMETRY_TRACE_COLLECTOR_URLS: required with ENABLE_TELEMETRY_TRACES=true "
                "(an OTLP/HTTP collector such as http://otel-collector:4318; "
                "OPEN_TELEMETRY_COLLECTOR_URLS is used when it is unset)"
            )
        return cls(
            env=env,
            log_level=read.value("LOG_LEVEL", values.log_level, cls.log_level),
            log_format=read.value(
                "LOG_FORMAT",
                values.log_format,
                "json" if env is Environment.PRODUCTION else cls.log_format,
            ),
            database_url=read.value("DATABASE_URL", values.postgres_url, None),
            redis_url=read.value("REDIS_URL", values.redis_url, None),
            data_dir=read.value("KIUNGO_DATA_DIR", Path, None) or values.default_data_dir(env_vars),
            use_tigerbeetle=read.value("USE_TIGERBEETLE", values.boolean, cls.use_tigerbeetle),
            tigerbeetle_cluster_id=read.value(
                "TIGERBEETLE_CLUSTER_ID", values.u128, cls.tigerbeetle_cluster_id
            ),
            tigerbeetle_replica_addresses=read.value(
                "TIGERBEETLE_REPLICA_ADDRESSES", values.addresses, None
            ),
            ilp_address=read.value("ILP_ADDRESS", values.ilp_address, cls.ilp_address),
            stream_secret=stream_secret,
            connector_port=connector_port,
            ilp_connector_url=read.value(
                "ILP_CONNECTOR_URL", values.http_url, f"http://127.0.0.1:{connector_port}"
            ),
            max_packet_amount=read.value("MAX_PACKET_AMOUNT", values.u64, None),
            redis_key_prefix=read.value("REDIS_KEY_PREFIX", str, cls.redis_key_prefix),
            peer_rate_limit=read.value("PEER_RATE_LIMIT", values.positive_int, None),
            peer_throughput_limit=read.value("PEER_THROUGHPUT_LIMIT", values.positive_int, None),
            packet_timeout_ms=read.value(
                "PACKET_TIMEOUT_MS", values.positive_int, cls.packet_timeout_ms
            ),
            admin_port=read.value("ADMIN_PORT", values.port, cls.admin_port),
            admin_api_secret=read.value("ADMIN_API_SECRET", str, None),
            admin_api_signature_ttl_seconds=read.value(
                "ADMIN_API_SIGNATURE_TTL_SECONDS",
                values.positive_int,
                cls.admin_api_signature_ttl_seconds,
            ),
            graphql_idempotency_key_ttl_ms=read.value(
                "GRAPHQL_IDEMPOTENCY_KEY_TTL_MS",
                values.positive_int,
                cls.graphql_idempotency_key_ttl_ms,
            ),
            open_payments_url=open_payments_url,
            operator_tenant_id=read.value(
                "OPERATOR_TENANT_ID", values.tenant_id, cls.operator_tenant_id
            ),
            wallet_address_url=read.value(
                "WALLET_ADDRESS_URL",
                values.http_url,
                f"{open_payments_url.rstrip('/')}/.well-known/pay",
            ),
            key_id=read.value("KEY_ID", values.key_id, None),
            private_key_file=read.value("PRIVATE_KEY_FILE", values.private_key_file, None),
            auth_server_grant_url=read.value(
                "AUTH_SERVER_GRANT_URL", values.http_url, cls.auth_server_grant_url
            ),
            auth_port=read.value("AUTH_PORT", values.port, cls.auth_port),
            access_token_expiry_seconds=read.value(
                "ACCESS_TOKEN_EXPIRY_SECONDS", values.positive_int, cls.access_token_expiry_seconds
            ),
            identity_server_url=read.value("IDENTITY_SERVER_URL", values.http_url, None),
            identity_server_secret=read.value("IDENTITY_SERVER_SECRET", str, None),
            interaction_expiry_seconds=read.value(
                "INTERACTION_EXPIRY_SECONDS", values.positive_int, cls.interaction_expiry_seconds
            ),
            enable_auto_peering=read.value(
                "ENABLE_AUTO_PEERING", values.boolean, cls.enable_auto_peering
            ),
            auto_peering_server_port=read.value(
                "AUTO_PEERING_SERVER_PORT", values.port, cls.auto_peering_server_port
            ),
            exchange_rates_url=read.value("EXCHANGE_RATES_URL", values.http_url, None),
            exchange_rates_lifetime_ms=read.value(
                "EXCHANGE_RATES_LIFETIME", values.non_negative_int, cls.exchange_rates_lifetime_ms
            ),
            slippage=read.value("SLIPPAGE", values.slippage, cls.slippage),
            quote_lifespan_ms=read.value(
                "QUOTE_LIFESPAN", values.positive_int, cls.quote_lifespan_ms
            ),
            incoming_payment_expiry_max_ms=read.value(
                "INCOMING_PAYMENT_EXPIRY_MAX_MS",
                values.positive_int,
                cls.incoming_payment_expiry_max_ms,
            ),
            max_outgoing_payment_retry_attempts=read.value(
                "MAX_OUTGOING_PAYMENT_RETRY_ATTEMPTS",
                values.non_negative_int,
                cls.max_outgoing_payment_retry_attempts,
            ),
            outgoing_payment_attempt_timeout_ms=read.value(
                "OUTGOING_PAYMENT_ATTEMPT_TIMEOUT_MS",
                values.positive_int,
                cls.outgoing_payment_attempt_timeout_ms,
            ),
            receiver_fetch_timeout_ms=read.value(
                "RECEIVER_FETCH_TIMEOUT_MS", values.positive_int, cls.receiver_fetch_timeout_ms
            ),
            refuse_private_receivers=read.value(
                "REFUSE_PRIVATE_RECEIVERS", values.boolean, env is Environment.PRODUCTION
            ),
            webhook_url=read.value("WEBHOOK_URL", values.http_url, None),
            webhook_timeout_ms=read.value(
                "WEBHOOK_TIMEOUT", values.positive_int, cls.webhook_timeout_ms
            ),
            webhook_max_retry=read.value(
                "WEBHOOK_MAX_RETRY", values.non_negative_int, cls.webhook_max_retry
            ),
            signature_secret=read.value("SIGNATURE_SECRET", str, None),
            webhook_retry_backoff_ms=read.value(
                "WEBHOOK_RETRY_BACKOFF_MS", values.positive_int, cls.webhook_retry_backoff_ms
            ),
            worker_interval_ms=read.value(
                "WORKER_INTERVAL_MS", values.positive_int, cls.worker_interval_ms
            ),
            telemetry_traces=telemetry_traces,
            telemetry_trace_urls=trace_urls,
        )

    @property
    def is_production(self) -> bool:
        return self.env is Environment.PRODUCTION


def unused_rafiki_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """The Rafiki variables set (not empty) in ``environ`` that Kiungo does not read, sorted."""
    env_vars = os.environ if environ is None else environ
    return sorted(
        name for name in RAFIKI_VARIABLES - _variables_read() if env_vars.get(name, "").strip()
    )


def warn_unused_rafiki_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """Log one warning for each of :func:`unused_rafiki_variables`; a service calls it once at
    start, after logging is configured. Returns the names."""
    names = unused_rafiki_variables(environ)
    for name in names:
        log.warning(
            "%s is set but means nothing to Kiungo (a Rafiki setting it does not implement): "
            "ignored",
            name,
            extra={"variable": name},
        )
    return names


class _Recording(dict[str, str]):
    """An empty environment that notes every name looked up in it."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        self.names.add(name)
        return default


@functools.cache
def _variables_read() -> frozenset[str]:
    # Found by reading the settings from an environment that records the names asked for, so
    # a setting added to from_env stops being reported as ignored without another list to edit.
    environ = _Recording()
    Settings.from_env(environ, serving=False)
    return frozenset(environ.names)


class _Reader:
    """Reads one variable at a time, turning a parser's ValueError into a named ConfigError."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def raw(self, name: str) -> str | None:
        value = self._environ.get(name, "").strip()
        return value or None

    def value(self, name: str, parse: Callable[[str], _T], default: _T) -> _T:
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            return parse(raw)
        except ValueError as error:
            raise ConfigError(f"{name}: {error}") from None

    def env(self) -> Environment:
        # Only Rafiki's NODE_ENV: ENV is the POSIX shell's startup-file variable.
        return self.value("NODE_ENV", values.environment, Environment.DEVELOPMENT)
