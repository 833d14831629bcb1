"""The node's own Open Payments client identity (KEY_ID, PRIVATE_KEY_FILE, WALLET_ADDRESS_URL),
as Rafiki configures it, and where the connector publishes its key."""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tests.connector.harness import WALLET_BASE, running_connector

from kiungo.config import ConfigError, Settings
from kiungo.openpayments.http_signatures import sign_request, verify_request
from kiungo.openpayments.identity import node_identity
from kiungo.openpayments.jwk import private_key_to_pem, public_key_to_jwk

SECRET = base64.b64encode(bytes(range(32))).decode()


def test_a_private_key_file_and_key_id_are_the_identity(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "private-key.pem"
    path.write_bytes(private_key_to_pem(key))
    settings = Settings.from_env(
        {"PRIVATE_KEY_FILE": str(path), "KEY_ID": "node-key-1",
         "WALLET_ADDRESS_URL": "https://wallet.example/.well-known/pay/"}
    )  # fmt: skip
    identity = node_identity(settings)
    assert identity.wallet_address == "https://wallet.example/.well-known/pay"
    assert identity.key_id == "node-key-1"
    assert identity.jwk() == public_key_to_jwk(key.public_key(), "node-key-1")
    # What it signs verifies with what it publishes.
    headers = sign_request(
        method="POST", target_uri="https://auth.example/", headers={}, body=b"{}",
        private_key=identity.private_key, key_id=identity.key_id, created=1000,
    )  # fmt: skip
    verify_request(
        method="POST", target_uri="https://auth.example/", headers=headers, body=b"{}",
        jwks=[identity.jwk()], now=1000,
    )  # fmt: skip


def test_without_a_key_file_every_process_derives_the_same_key_from_the_stream_secret() -> None:
    one = node_identity(Settings.from_env({"STREAM_SECRET": SECRET}))
    # Another process's settings: equal values, another object.
    two = node_identity(dataclasses.replace(Settings.from_env({"STREAM_SECRET": SECRET})))
    assert one.jwk() == two.jwk()
    other = base64.b64encode(bytes(32)).decode()
    assert node_identity(Settings.from_env({"STREAM_SECRET": other})).jwk()["x"] != one.jwk()["x"]
    # KEY_ID unset: the key's RFC 7638 thumbprint, so a new key has a new id.
    assert (
        len(one.key_id) == 43
        and one.key_id != node_identity(Settings.from_env({"STREAM_SECRET": other})).key_id
    )


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("PRIVATE_KEY_FILE", "/nonexistent/key.pem", "cannot read"),
        ("PRIVATE_KEY_FILE", "{junk}", "not an Ed25519"),
        ("KEY_ID", "a\x01b", "printable"),
    ],
)
def test_a_bad_key_setting_stops_the_node_at_start(
    tmp_path: Path, name: str, value: str, said: str
) -> None:
    if value == "{junk}":
        junk = tmp_path / "junk.pem"
        junk.write_text("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
        value = str(junk)
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({name: value})
    message = str(raised.value)
    assert message.startswith(f"{name}: ") and said in message and "\n" not in message


async def test_the_connector_serves_the_node_key_at_its_wallet_address(
    database_url: str, redis_server_url: str, redis_prefix: str
) -> None:
    settings = dataclasses.replace(Settings(), wallet_address_url=f"{WALLET_BASE}/.well-known/pay")
    async with running_connector(
        database_url, redis_server_url, redis_prefix, settings=settings
    ) as connector:
        assert connector.node is not None
        identity = node_identity(connector.node.settings)
        # The harness's OPEN_PAYMENTS_URL is WALLET_BASE, served here on loopback.
        path = identity.wallet_address.removeprefix(WALLET_BASE)
        assert path == "/.well-known/pay"
        answer = await connector.client.get(f"{connector.url}{path}/jwks.json")
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"keys": [identity.jwk()]}
        # The wallet address itself is no document (it is no account holder's).
        document = await connector.client.get(
            f"{connector.url}{path}", headers={"Accept": "application/json"}
        )
        assert document.status_code == 404
