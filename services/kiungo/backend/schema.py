"""The admin API's Strawberry schema: every domain's queries and mutations in one graph, with
depth, alias, size and cost limits checked before anything runs."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
    Visitor,
    specified_rules,
    visit,
)

from kiungo.backend.api.assets import AssetMutation, AssetQuery, FeeMutation
from kiungo.backend.api.auto_peering import AutoPeeringMutation
from kiungo.backend.api.common import SCALARS
from kiungo.backend.api.grants import GrantMutation, GrantQuery
from kiungo.backend.api.incoming_payments import IncomingPaymentMutation, IncomingPaymentQuery
from kiungo.backend.api.liquidity import (
    AssetLiquidityMutation,
    LiquidityMutation,
    PeerLiquidityMutation,
)
from kiungo.backend.api.outgoing_payments import OutgoingPaymentMutation, OutgoingPaymentQuery
from kiungo.backend.api.pagination import MAX_PAGE
from kiungo.backend.api.payments import PaymentQuery
from kiungo.backend.api.peers import PeerMutation, PeerQuery
from kiungo.backend.api.quotes import QuoteMutation, QuoteQuery
from kiungo.backend.api.receivers import ReceiverMutation, ReceiverQuery
from kiungo.backend.api.tenants import TenantQuery
from kiungo.backend.api.wallet_address_keys import WalletAddressKeyMutation
from kiungo.backend.api.wallet_addresses import WalletAddressMutation, WalletAddressQuery
from kiungo.backend.api.webhooks import WebhookQuery

__all__ = ["MAX_ALIASES", "MAX_COST", "MAX_DEPTH", "MAX_TOKENS", "RULES", "build_schema"]

MAX_DEPTH = 10
MAX_ALIASES = 30
MAX_TOKENS = 4000
MAX_COST = 50_000
_DEFAULT_PAGE = 20
# A connection's lists of its page's items.
_PAGE_LISTS = frozenset({"edges", "nodes"})


@strawberry.type
class Query(
    AssetQuery,
    WalletAddressQuery,
    IncomingPaymentQuery,
    PaymentQuery,
    WebhookQuery,
    PeerQuery,
    QuoteQuery,
    OutgoingPaymentQuery,
    ReceiverQuery,
    TenantQuery,
    GrantQuery,
):
    pass


@strawberry.type
class Mutation(
    AssetMutation,
    AssetLiquidityMutation,
    FeeMutation,
    LiquidityMutation,
    WalletAddressMutation,
    WalletAddressKeyMutation,
    IncomingPaymentMutation,
    PeerMutation,
    AutoPeeringMutation,
    PeerLiquidityMutation,
    QuoteMutation,
    OutgoingPaymentMutation,
    ReceiverMutation,
    GrantMutation,
):
    pass


class CostLimiter(ValidationRule):
    """Refuses an operation whose worst case touches more than ``MAX_COST`` objects: each field
    costs 1, and what is under a paginated field counts once per item it may return (its
    literal ``first``/``last``, 100 when given by a variable, 20 when not given)."""

    def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
        fragments = {
            d.name.value: d
            for d in self.context.document.definitions
            if isinstance(d, FragmentDefinitionNode)
        }
        cost = _cost(node.selection_set, fragments, set())
        if cost > MAX_COST:
            self.report_error(
                GraphQLError(
                    f"the query could touch {cost} objects; the limit is {MAX_COST}: "
                    "ask for smaller pages or fewer nested lists",
                    node,
                )
            )


def _page_size(field: FieldNode) -> int:
    size = _DEFAULT_PAGE
    for argument in field.arguments or ():
        if argument.name.value not in ("first", "last", "limit"):
            continue
        value = argument.value
        # A literal of more digits than any page size could be is a refusal waiting to happen
        # (and int() refuses strings of thousands of digits): count it as the largest page.
        if isinstance(value, IntValueNode) and len(value.value.lstrip("-")) <= 18:
            size = int(value.value)
        else:
            size = MAX_PAGE
    return max(1, size)


def _cost(
    selection_set: SelectionSetNode | None,
    fragments: dict[str, FragmentDefinitionNode],
    seen: set[str],
    *,
    in_page: bool = False,
) -> int:
    """``in_page``: the selection set is a paginated field's, whose page size is counted."""
    if selection_set is None:
        return 0
    total = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            name = selection.name.value
            names = {a.name.value for a in selection.arguments or ()}
            if in_page and name in _PAGE_LISTS:
                # The items of the page its connection already counted, not a page more.
                paginated = False
            else:
                paginated = bool(names & {"first", "last", "after", "before", "limit"}) or (
                    name.endswith("s") and selection.selection_set is not None
                )
            inner = _cost(selection.selection_set, fragments, seen, in_page=paginated)
            total += 1 + (inner * _page_size(selection) if paginated else inner)
        elif isinstance(selection, InlineFragmentNode):
            total += _cost(selection.selection_set, fragments, seen, in_page=in_page)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name in seen or name not in fragments:
                continue
            total += _cost(fragments[name].selection_set, fragments, seen | {name}, in_page=in_page)
    return total


class DepthLimiter(ValidationRule):
    """Refuses an operation nested deeper than ``MAX_DEPTH`` fields below its root fields
    (introspection excepted: GraphiQL's own query is deep but bounded)."""

    def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
        fragments = {
            d.name.value: d
            for d in self.context.document.definitions
            if isinstance(d, FragmentDefinitionNode)
        }
        depth = _depth(node.selection_set, fragments, set(), root=True)
        if depth > MAX_DEPTH:
            self.report_error(
                GraphQLError(
                    f"the query is {depth} levels deep; the maximum operation depth is {MAX_DEPTH}",
                    node,
                )
            )


def _depth(
    selection_set: SelectionSetNode | None,
    fragments: dict[str, FragmentDefinitionNode],
    seen: set[str],
    *,
    root: bool = False,
) -> int:
    """How many levels of fields lie below this selection set (0: leaves only)."""
    if selection_set is None:
        return -1
    deepest = -1
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            if root and selection.name.value.startswith("__"):
                continue
            below = _depth(selection.selection_set, fragments, seen)
            deepest = max(deepest, below + 1)
        elif isinstance(selection, InlineFragmentNode):
            deepest = max(deepest, _depth(selection.selection_set, fragments, seen, root=root))
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name in seen or name not in fragments:
                continue
            deepest = max(
                deepest,
                _depth(fragments[name].selection_set, fragments, seen | {name}, root=root),
            )
    return deepest


class AliasLimiter(ValidationRule):
    """Refuses a document with more than ``MAX_ALIASES`` aliased fields."""

    def enter_document(self, node: DocumentNode, *_: Any) -> None:
        count = 0

        class _Count(Visitor):
            def enter_field(self, field: FieldNode, *_: Any) -> None:
                nonlocal count
                if field.alias is not None:
                    count += 1

        visit(node, _Count())
        if count > MAX_ALIASES:
            self.report_error(
                GraphQLError(f"the document has {count} aliases; at most {MAX_ALIASES} are allowed")
            )


# Every rule the admin API validates a document with, the standard ones first.
RULES: tuple[type[ASTValidationRule], ...] = (
    *specified_rules,
    DepthLimiter,
    AliasLimiter,
    CostLimiter,
)


def build_schema() -> strawberry.Schema:
    """The Strawberry schema. The HTTP layer parses (at most ``MAX_TOKENS`` tokens), validates
    with ``RULES`` and executes documents itself, with caches, on the graphql-core schema."""
    return strawberry.Schema(query=Query, mutation=Mutation, scalar_overrides=SCALARS)
