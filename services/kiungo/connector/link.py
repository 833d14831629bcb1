"""The HTTP/1.1 link to peers for ILP over HTTP (RFC 35, synchronous mode), over the shared
keep-alive client (:mod:`kiungo.runtime.http1`)."""

from __future__ import annotations

from kiungo.runtime.http1 import Http1Client, LinkError

__all__ = ["LinkError", "PeerLinks"]

_ILP_HEADERS = b"Content-Type: application/octet-stream\r\nAccept: application/octet-stream\r\n"


class PeerLinks:
    def __init__(self) -> None:
        self._client = Http1Client()

    async def post(self, url: str, body: bytes, token: str) -> tuple[int, bytes]:
        """POST ``body`` with the bearer ``token``; the status and body of the reply.

        Cancellation (the packet's timer) closes the connection in use.
        """
        # UTF-8, as the digest of an incoming token is: the same bytes as ASCII for every token
        # the admin API takes, and no token can fail to encode.
        headers = b"Authorization: Bearer " + token.encode("utf-8") + b"\r\n" + _ILP_HEADERS
        return await self._client.post(url, body, headers)

    async def close(self) -> None:
        await self._client.close()
