"""Settings: Rafiki's variable names, development defaults, one named line for each bad value."""

from __future__ import annotations

import base64
import dataclasses
from decimal import Decimal
from pathlib import Path

import pytest

from kiungo.config import ConfigError, Environment, Settings

SECRET = bytes(range(32))
SECRET_B64 = base64.b64encode(SECRET).decode()


def test_defaults_describe_a_development_node_on_loopback() -> None:
    settings = Settings.from_env({"HOME": "/home/operator"})

    assert settings.env is Environment.DEVELOPMENT
    assert settings.log_level == "INFO"
    assert settings.database_url is None
    assert settings.redis_url is None
    assert settings.data_dir == Path("/home/operator/.local/share/kiungo")
    assert settings.ilp_address == "test.kiungo"
    assert settings.stream_secret is None
    assert settings.connector_port == 3002
    assert settings.admin_port == 3001
    assert settings.ilp_connector_url == "http://127.0.0.1:3002"
    assert settings.open_payments_url == "http://127.0.0.1:3002"
    assert settings.wallet_address_url == "http://127.0.0.1:3002/.well-known/pay"
    assert settings.auth_server_grant_url == "http://127.0.0.1:3006"
    assert settings.auth_port == 3006
    assert settings.access_token_expiry_seconds == 600
    assert settings.admin_api_secret is None
    assert settings.exchange_rates_url is None
    assert settings.slippage == Decimal("0.01")
    assert settings.max_packet_amount is None
    assert settings.quote_lifespan_ms == 300_000
    assert settings.webhook_url is None


def test_rafiki_variable_names_are_read() -> None:
    settings = Settings.from_env(
        {
            "NODE_ENV": "production",
            "LOG_LEVEL": "debug",
            "DATABASE_URL": "postgresql://kiungo@db:5432/kiungo",
            "REDIS_URL": "redis://cache:6379/1",
            "KIUNGO_DATA_DIR": "/var/lib/kiungo",
            "ILP_ADDRESS": "g.kiungo.node1",
            "STREAM_SECRET": SECRET_B64,
            "CONNECTOR_PORT": "4002",
            "ILP_CONNECTOR_URL": "https://ilp.example.com/ilp",
            "MAX_PACKET_AMOUNT": "1000000",
            "ADMIN_PORT": "4001",
            "ADMIN_API_SECRET": "admin-secret",
            "ADMIN_API_SIGNATURE_TTL_SECONDS": "60",
            "GRAPHQL_IDEMPOTENCY_KEY_TTL_MS": "1000",
            "OPEN_PAYMENTS_URL": "https://wallet.example.com",
            "WALLET_ADDRESS_URL": "https://wallet.example.com/node",
            "AUTH_SERVER_GRANT_URL": "https://auth.wallet.example.com",
            "AUTH_PORT": "4006",
            "ACCESS_TOKEN_EXPIRY_SECONDS": "120",
            "EXCHANGE_RATES_URL": "https://rates.example.com/rates",
            "EXCHANGE_RATES_LIFETIME": "60000",
            "SLIPPAGE": "0.005",
            "QUOTE_LIFESPAN": "120000",
            "INCOMING_PAYMENT_EXPIRY_MAX_MS": "86400000",
            "MAX_OUTGOING_PAYMENT_RETRY_ATTEMPTS": "3",
            "WEBHOOK_URL": "https://hooks.example.com/kiungo",
            "WEBHOOK_TIMEOUT": "5000",
            "WEBHOOK_MAX_RETRY": "7",
            "SIGNATURE_SECRET": "webhook-secret",
        }
    )

    assert settings == Settings(
        env=Environment.PRODUCTION,
        log_level="DEBUG",
        log_format="json",
        database_url="postgresql://kiungo@db:5432/kiungo",
        redis_url="redis://cache:6379/1",
        data_dir=Path("/var/lib/kiungo"),
        ilp_address="g.kiungo.node1",
        stream_secret=SECRET,
        connector_port=4002,
        ilp_connector_url="https://ilp.example.com/ilp",
        max_packet_amount=1_000_000,
        admin_port=4001,
        admin_api_secret="admin-secret",
        admin_api_signature_ttl_seconds=60,
        graphql_idempotency_key_ttl_ms=1000,
        open_payments_url="https://wallet.example.com",
        wallet_address_url="https://wallet.example.com/node",
        auth_server_grant_url="https://auth.wallet.example.com",
        auth_port=4006,
        access_token_expiry_seconds=120,
        exchange_rates_url="https://rates.example.com/rates",
        exchange_rates_lifetime_ms=60_000,
        slippage=Decimal("0.005"),
        quote_lifespan_ms=120_000,
        incoming_payment_expiry_max_ms=86_400_000,
        max_outgoing_payment_retry_attempts=3,
        refuse_private_receivers=True,  # production's default
        webhook_url="https://hooks.example.com/kiungo",
        webhook_timeout_ms=5000,
        webhook_max_retry=7,
        signature_secret="webhook-secret",
    )
    assert settings.is_production


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("NODE_ENV", "staging"),
        ("LOG_LEVEL", "loud"),
        ("DATABASE_URL", "mysql://db/kiungo"),
        ("REDIS_URL", "memcached://cache"),
        ("ILP_ADDRESS", "kiungo"),
        ("ILP_ADDRESS", "g.node..bad"),
        ("STREAM_SECRET", "not base64!"),
        ("STREAM_SECRET", base64.b64encode(bytes(16)).decode()),
        ("CONNECTOR_PORT", "abc"),
        ("CONNECTOR_PORT", "70000"),
        ("ADMIN_PORT", "0"),
        ("AUTH_PORT", "70000"),
        ("ACCESS_TOKEN_EXPIRY_SECONDS", "0"),
        ("ADMIN_PORT", "3_001"),
        ("ILP_CONNECTOR_URL", "ftp://connector"),
        ("MAX_PACKET_AMOUNT", "0"),
        ("MAX_PACKET_AMOUNT", str(2**64)),
        ("ADMIN_API_SIGNATURE_TTL_SECONDS", "-1"),
        ("GRAPHQL_IDEMPOTENCY_KEY_TTL_MS", "1.5"),
        ("OPEN_PAYMENTS_URL", "wallet.example.com"),
        ("WALLET_ADDRESS_URL", "https://"),
        ("AUTH_SERVER_GRANT_URL", "auth.example.com"),
        ("EXCHANGE_RATES_URL", "rates"),
        ("EXCHANGE_RATES_LIFETIME", "soon"),
        ("SLIPPAGE", "1"),
        ("SLIPPAGE", "-0.01"),
        ("SLIPPAGE", "one percent"),
        ("SLIPPAGE", "NaN"),
        ("QUOTE_LIFESPAN", "0"),
        ("INCOMING_PAYMENT_EXPIRY_MAX_MS", "--5"),
        ("MAX_OUTGOING_PAYMENT_RETRY_ATTEMPTS", "-2"),
        ("WEBHOOK_URL", "hooks"),
        ("WEBHOOK_TIMEOUT", "2s"),
        ("WEBHOOK_MAX_RETRY", "ten"),
        ("OUTGOING_PAYMENT_ATTEMPT_TIMEOUT_MS", "0"),
        ("RECEIVER_FETCH_TIMEOUT_MS", "5s"),
        ("REFUSE_PRIVATE_RECEIVERS", "maybe"),
    ],
)
def test_a_malformed_value_raises_one_line_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({name: value})

    message = str(raised.value)
    assert message.startswith(f"{name}: ")
    assert "\n" not in message


def test_an_empty_variable_counts_as_unset() -> None:
    settings = Settings.from_env({"CONNECTOR_PORT": "", "DATABASE_URL": "  ", "SLIPPAGE": ""})

    assert settings.connector_port == 3002
    assert settings.database_url is None
    assert settings.slippage == Decimal("0.01")


def test_private_receivers_are_refused_by_default_in_production_only() -> None:
    assert not Settings.from_env({}).refuse_private_receivers
    assert not Settings.from_env({"NODE_ENV": "test"}).refuse_private_receivers
    production = {"NODE_ENV": "production", "STREAM_SECRET": SECRET_B64}
    assert Settings.from_env(production).refuse_private_receivers
    off = Settings.from_env({**production, "REFUSE_PRIVATE_RECEIVERS": "false"})
    assert not off.refuse_private_receivers
    assert Settings.from_env({"REFUSE_PRIVATE_RECEIVERS": "TRUE"}).refuse_private_receivers


def test_receiver_reads_and_payment_attempts_are_bounded_in_time() -> None:
    assert Settings.from_env({}).receiver_fetch_timeout_ms == 5_000
    assert Settings.from_env({}).outgoing_payment_attempt_timeout_ms == 120_000
    settings = Settings.from_env(
        {"RECEIVER_FETCH_TIMEOUT_MS": "750", "OUTGOING_PAYMENT_ATTEMPT_TIMEOUT_MS": "3000"}
    )
    assert settings.receiver_fetch_timeout_ms == 750
    assert settings.outgoing_payment_attempt_timeout_ms == 3_000


def test_production_refuses_to_start_without_a_stream_secret() -> None:
    with pytest.raises(ConfigError, match=r"^STREAM_SECRET: "):
        Settings.from_env({"NODE_ENV": "production"})


def test_stream_secret_is_read_in_either_base64_alphabet_padded_or_not() -> None:
    url_safe = base64.urlsafe_b64encode(b"\xfb\xff" * 16).decode().rstrip("=")

    assert Settings.from_env({"STREAM_SECRET": url_safe}).stream_secret == b"\xfb\xff" * 16
    assert Settings.from_env({"STREAM_SECRET": SECRET_B64}).stream_secret == SECRET


def test_a_bad_stream_secret_is_not_echoed() -> None:
    bad = base64.b64encode(b"a secret that is too short").decode()

    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"STREAM_SECRET": bad})

    assert bad not in str(raised.value)


def test_a_bad_database_url_does_not_echo_its_password() -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"DATABASE_URL": "mysql://kiungo:hunter2@db/kiungo"})

    assert "hunter2" not in str(raised.value)


def test_node_env_names_the_environment() -> None:
    assert Settings.from_env({"NODE_ENV": "test"}).env is Environment.TEST


def test_the_shells_env_variable_is_ignored() -> None:
    assert Settings.from_env({"ENV": "/etc/shrc"}).env is Environment.DEVELOPMENT


def test_pino_level_names_map_to_python_ones() -> None:
    assert Settings.from_env({"LOG_LEVEL": "warn"}).log_level == "WARNING"
    assert Settings.from_env({"LOG_LEVEL": "fatal"}).log_level == "CRITICAL"


def test_wallet_address_url_defaults_under_open_payments_url() -> None:
    settings = Settings.from_env({"OPEN_PAYMENTS_URL": "https://wallet.example.com/"})

    assert settings.wallet_address_url == "https://wallet.example.com/.well-known/pay"


def test_connector_url_follows_the_connector_port() -> None:
    settings = Settings.from_env({"CONNECTOR_PORT": "4002"})

    assert settings.ilp_connector_url == "http://127.0.0.1:4002"


def test_repr_leaves_out_secrets_and_database_passwords() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://kiungo:hunter2@db/kiungo",
            "STREAM_SECRET": SECRET_B64,
            "ADMIN_API_SECRET": "admin-secret",
            "SIGNATURE_SECRET": "webhook-secret",
        }
    )

    shown = repr(settings)
    assert "hunter2" not in shown
    assert "admin-secret" not in shown
    assert "webhook-secret" not in shown
    assert repr(SECRET) not in shown


def test_settings_cannot_be_changed_once_read() -> None:
    settings = Settings.from_env({})

    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.admin_port = 1  # type: ignore[misc]


def test_tigerbeetle_settings_default_to_postgres_and_are_read_and_checked() -> None:
    default = Settings.from_env({})
    assert default.use_tigerbeetle is False
    assert default.tigerbeetle_cluster_id == 0
    assert default.tigerbeetle_replica_addresses is None
    settings = Settings.from_env(
        {
            "USE_TIGERBEETLE": "true",
            "TIGERBEETLE_CLUSTER_ID": str(2**100),
            "TIGERBEETLE_REPLICA_ADDRESSES": "10.0.0.1:3000, 10.0.0.2:3000",
        }
    )
    assert settings.use_tigerbeetle is True
    assert settings.tigerbeetle_cluster_id == 2**100
    assert settings.tigerbeetle_replica_addresses == "10.0.0.1:3000,10.0.0.2:3000"
    for name, value in (
        ("USE_TIGERBEETLE", "maybe"),
        ("TIGERBEETLE_CLUSTER_ID", "-1"),
        ("TIGERBEETLE_CLUSTER_ID", str(2**128)),
        ("TIGERBEETLE_REPLICA_ADDRESSES", "10.0.0.1:3000,,"),
    ):
        with pytest.raises(ConfigError, match=f"^{name}: "):
            Settings.from_env({name: value})
