"""Reading a receiver over HTTP (its SPSP answer, its incoming payment's JSON): bounded, and
optionally kept off this node's own network.

A receiver is named by whoever asks for a quote, so what it answers and how it answers are
hostile input. Every fetch here is bounded:

* **in total time**: the whole exchange (name resolution, connection, TLS, headers, body) runs
  under one ``asyncio.timeout``. httpx's own timeouts are per read, so a server trickling a
  byte at a time would otherwise hold the caller as long as it liked;
* **in bytes**: the body is read as it arrives and refused past ``max_bytes`` (a declared
  ``Content-Length`` above it is refused before reading); it is asked for and read without
  content coding, so a small compressed body cannot expand in memory;
* **in what it follows**: no redirects, no proxy from the environment.

**Private addresses.** A client from :func:`receiver_client` with ``refuse_private`` (the
``REFUSE_PRIVATE_RECEIVERS`` setting, on in production) refuses a host any of whose addresses
is loopback, private, link-local (the cloud metadata address 169.254.169.254 among them),
shared, reserved, multicast or unspecified, or an IPv6 form of one (IPv4-mapped, NAT64,
6to4, ``fd00:ec2::254``). The check sits in the connection layer: httpcore asks its network
backend to connect to ``(host name, port)``; ours resolves the name itself
(``loop.getaddrinfo``), checks every address, and connects the socket to an address it has
just checked, never to the name. A name that answers a public address to the check and a
private one to the connection (DNS rebinding) therefore cannot reach the private one: there is
no second lookup. TLS is still negotiated by httpcore above that socket with the host *name*
as SNI and as the name the certificate must match, and connections are pooled per host name,
so nothing about certificate checking changes. Refused hosts are never contacted, so nothing
they would answer can reach an error message; the error says only that the address is not
public.

The connection pool is httpx's own (:class:`httpx.AsyncHTTPTransport`), built with our network
backend: httpx has no argument for one, so the transport's pool is replaced after it is built.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import typing
from dataclasses import dataclass

import httpcore
import httpx

__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "FetchedReply",
    "NonPublicAddress",
    "ReceiverFetchError",
    "Unreachable",
    "exchange",
    "fetch",
    "is_public_address",
    "post",
    "receiver_client",
]

DEFAULT_TIMEOUT_SECONDS = 5.0
"""RECEIVER_FETCH_TIMEOUT_MS's default: the most one fetch of a receiver may take."""

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_METADATA = frozenset(
    (ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254"))
)


class ReceiverFetchError(Exception):
    """The receiver could not be read: its message is safe to show to whoever asked (it names
    the failure, never what a refused host answered)."""


class Unreachable(ReceiverFetchError):
    """No connection could be made: the name did not resolve or nothing listens there."""


class NonPublicAddress(ReceiverFetchError):
    """The receiver's host resolves to an address this node does not fetch from."""


@dataclass(frozen=True, slots=True)
class FetchedReply:
    status_code: int
    content_type: str
    """The media type, lower case, without parameters ("" when the reply named none)."""
    body: bytes
    """Read only for a 200 answer (any answer to :func:`post`): empty otherwise."""
    location: str = ""
    """The answer's ``Location`` header (where a redirect, never followed, points)."""

    @property
    def is_json(self) -> bool:
        """``application/json`` or any ``application/*+json`` (``application/spsp4+json``)."""
        kind = self.content_type
        return kind == "application/json" or (
            kind.startswith("application/") and kind.endswith("+json")
        )


def is_public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """False for every address a receiver must not resolve to when private ones are refused."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None and not is_public_address(embedded):
            return False
    return not (
        address in _METADATA
        or address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
        or not address.is_global
    )


async def _public_addresses(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, once all of them are checked public."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise httpcore.ConnectError(f"cannot resolve {host}") from None
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        text = str(sockaddr[0])
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            raise NonPublicAddress(f"{host} resolves to an unusable address") from None
        if not is_public_address(address):
            raise NonPublicAddress(
                f"{host} resolves to a loopback, private, link-local or otherwise non-public "
                "address, which this node does not fetch from (REFUSE_PRIVATE_RECEIVERS)"
            )
        if text not in addresses:
            addresses.append(text)
    if not addresses:
        raise httpcore.ConnectError(f"cannot resolve {host}")
    return addresses


class _PublicOnlyBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses checked public (see above)."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        error: Exception | None = None
        for address in await _public_addresses(host, port):
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise NonPublicAddress("unix sockets are not receivers")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def receiver_client(*, refuse_private: bool) -> httpx.AsyncClient:
    """The client receivers are read with; with ``refuse_private``, hosts that resolve to a
    non-public address are refused (:class:`NonPublicAddress`) before any connection."""
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
    transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    if refuse_private:
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_PublicOnlyBackend(),
        )
    return httpx.AsyncClient(transport=transport, trust_env=False, follow_redirects=False)


async def fetch(
    client: httpx.AsyncClient,
    url: str,
    *,
    accept: str,
    max_bytes: int,
    max_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    headers: dict[str, str] | None = None,
) -> FetchedReply:
    """GET ``url``: the whole exchange within ``max_seconds`` seconds, a 200 body of at most
    ``max_bytes``. Raises :class:`ReceiverFetchError` (its message without ``url``: callers
    name what they were reading) for anything but an answer read in full."""
    return await _exchange(
        client, "GET", url, None, accept, max_bytes, max_seconds, headers, every_status=False
    )


async def post(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    *,
    content_type: str,
    accept: str,
    max_bytes: int,
    max_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> FetchedReply:
    """POST ``body`` to ``url``, bounded as :func:`fetch` is; the body of every answer is read
    (at most ``max_bytes``), whatever its status, so that a refusal's reason can be read."""
    headers = {"Content-Type": content_type}
    return await _exchange(
        client, "POST", url, body, accept, max_bytes, max_seconds, headers, every_status=True
    )


async def _exchange(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    content: bytes | None,
    accept: str | None,
    max_bytes: int,
    max_seconds: float,
    headers: dict[str, str] | None,
    *,
    every_status: bool,
) -> FetchedReply:
    request_headers = {**(headers or {}), "Accept-Encoding": "identity"}
    if accept is not None:
        request_headers["Accept"] = accept
    try:
        async with asyncio.timeout(max_seconds):  # not wait_for: see kiungo.runtime.tasks
            async with client.stream(
                method,
                url,
                content=content,
                headers=request_headers,
                follow_redirects=False,
                timeout=max_seconds,
            ) as response:
                kind = response.headers.get("content-type", "").split(";", 1)[0]
                reply = FetchedReply(
                    response.status_code,
                    kind.strip().lower(),
                    b"",
                    response.headers.get("location", ""),
                )
                if response.status_code != 200 and not every_status:
                    return reply
                coding = response.headers.get("content-encoding", "identity").strip().lower()
                if coding not in ("", "identity"):
                    raise ReceiverFetchError(f"answered in {coding!r} content coding")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise ReceiverFetchError(f"answered more than {max_bytes} bytes")
                body = bytearray()
                async for chunk in response.aiter_raw():
                    body += chunk
                    if len(body) > max_bytes:
                        raise ReceiverFetchError(f"answered more than {max_bytes} bytes")
                return FetchedReply(
                    reply.status_code, reply.content_type, bytes(body), reply.location
                )
    except TimeoutError:
        raise ReceiverFetchError(f"did not answer within {max_seconds:g} s") from None
    except httpx.TimeoutException:
        raise ReceiverFetchError(f"did not answer within {max_seconds:g} s") from None
    except httpx.HTTPError as exc:
        # The exception's text can carry what the host said (a reset, a refused port): only
        # the kind of failure goes out.
        if isinstance(exc, httpx.ConnectError):
            raise Unreachable(f"could not be read ({type(exc).__name__})") from None
        raise ReceiverFetchError(f"could not be read ({type(exc).__name__})") from None


async def exchange(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    content: bytes | None = None,
    max_bytes: int,
    max_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> FetchedReply:
    """One request with the bounds of :func:`fetch` (total time, bytes, no redirects, no
    content coding), for the Open Payments client: any method and body, and the body of every
    answer read (an error's body says why), at most ``max_bytes``. Raises
    :class:`ReceiverFetchError` for anything but an answer read in full."""
    return await _exchange(
        client,
        method,
        url,
        content,
        None,
        max_bytes,
        max_seconds,
        headers,
        every_status=True,
    )
