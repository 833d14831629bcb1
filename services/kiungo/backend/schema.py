"""The admin API's Strawberry schema: every domain's queries and mutations in one graph, with
depth, alias, size and cost limits checked before anything runs."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
)
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)

from kiungo.backend.api.assets import AssetMutation, AssetQuery
from kiungo.backend.api.common import SCALARS
from kiungo.backend.api.incoming_payments import IncomingPaymentMutation, IncomingPaymentQuery
from kiungo.backend.api.liquidity import LiquidityMutation
from kiungo.backend.api.pagination import MAX_PAGE
from kiungo.backend.api.payments import PaymentQuery
from kiungo.backend.api.peers import PeerMutation, PeerQuery
from kiungo.backend.api.wallet_addresses import WalletAddressMutation, WalletAddressQuery
from kiungo.backend.api.webhooks import WebhookQuery

__all__ = ["MAX_COST", "MAX_DEPTH", "build_schema"]

MAX_DEPTH = 10
MAX_COST = 50_000
_DEFAULT_PAGE = 20
# A connection's lists of its page's items.
_PAGE_LISTS = frozenset({"edges", "nodes"})


@strawberry.type
class Query(
    AssetQuery, WalletAddressQuery, IncomingPaymentQuery, PaymentQuery, WebhookQuery, PeerQuery
):
    pass


@strawberry.type
class Mutation(
    AssetMutation, LiquidityMutation, WalletAddressMutation, IncomingPaymentMutation, PeerMutation
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
        size = int(value.value) if isinstance(value, IntValueNode) else MAX_PAGE
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


class _Schema(strawberry.Schema):
    def process_errors(self, errors: Any, execution_context: Any = None) -> None:
        # The HTTP layer logs what is unexpected; refusals are answers, not log lines.
        return None


def build_schema() -> strawberry.Schema:
    # One instance of each for every request: the caches are shared on purpose, and the limits
    # are stateless validation rules (fresh ones per request would defeat the validation cache,
    # which keys on the rules).
    shared = (
        ParserCache(maxsize=512),
        ValidationCache(maxsize=512),
        QueryDepthLimiter(max_depth=MAX_DEPTH),
        MaxAliasesLimiter(max_alias_count=30),
        MaxTokensLimiter(max_token_count=4000),
        AddValidationRules([CostLimiter]),
    )
    extensions: list[Any] = [(lambda e=e: e) for e in shared]
    return _Schema(query=Query, mutation=Mutation, extensions=extensions, scalar_overrides=SCALARS)
