"""The shared data model: every table of the node, one module per domain."""

from kiungo.models.asset import Asset
from kiungo.models.base import Base
from kiungo.models.fee import Fee, FeeType
from kiungo.models.grant import Grant, GrantAccessToken, GrantState
from kiungo.models.incoming_payment import IncomingPayment, IncomingPaymentState
from kiungo.models.ledger import LedgerAccount, LedgerTransfer
from kiungo.models.outgoing_payment import OutgoingPayment, OutgoingPaymentState
from kiungo.models.peer import Peer, PeerIncomingToken
from kiungo.models.quote import Quote
from kiungo.models.wallet_address import WalletAddress, WalletAddressStatus
from kiungo.models.wallet_address_key import WalletAddressKey
from kiungo.models.webhook import WebhookDelivery, WebhookEvent

__all__ = [
    "Asset",
    "Base",
    "Fee",
    "FeeType",
    "Grant",
    "GrantAccessToken",
    "GrantState",
    "IncomingPayment",
    "IncomingPaymentState",
    "LedgerAccount",
    "LedgerTransfer",
    "OutgoingPayment",
    "OutgoingPaymentState",
    "Peer",
    "PeerIncomingToken",
    "Quote",
    "WalletAddress",
    "WalletAddressKey",
    "WalletAddressStatus",
    "WebhookDelivery",
    "WebhookEvent",
]
