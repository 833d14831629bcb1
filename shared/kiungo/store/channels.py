"""The Redis pub/sub channels the backend publishes on and the connector listens to (DESIGN §5).

Each name is used under the node's ``REDIS_KEY_PREFIX``. A message only wakes or invalidates:
whoever gets it reads the truth from Postgres, and everyone also polls, so a lost message delays
and never loses anything.
"""

__all__ = ["PAYMENTS_DUE_CHANNEL", "PEERS_CHANGED_CHANNEL", "RECEIVERS_CHANGED_CHANNEL"]

# The connector's peer table reloads on a message here.
PEERS_CHANGED_CHANNEL = "peers-changed"
# The connectors' receiver caches: the id of a wallet address or incoming payment to forget.
RECEIVERS_CHANGED_CHANNEL = "receivers-changed"
# The connector's sending worker looks for work at once on a message here (its poll is the
# fallback).
PAYMENTS_DUE_CHANNEL = "payments-due"
