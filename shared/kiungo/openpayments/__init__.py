"""Open Payments (issue 18 on): request signatures (RFC 9421, ``http_signatures``, with the
structured fields they are written in and the JWKs they are checked with), wallet address keys,
reading another node's incoming payment (``remote``), and this node as an Open Payments client
of other nodes (``identity``, ``client``)."""
