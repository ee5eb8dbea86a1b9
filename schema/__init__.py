"""The GraphQL surface: `build_schema()` assembles Query and Mutation from the domain modules."""

from __future__ import annotations

import logging
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from resolvers.codes import ErrorCode
from resolvers.errors import OperationError
from schema.allocations import AllocationMutation
from schema.api_keys import ApiKeyMutation, ApiKeyQuery
from schema.assignments import AssignmentMutation
from schema.audit import AuditQuery
from schema.documents import Documents
from schema.errors import ERROR_TYPES
from schema.evidence import EvidenceMutation, EvidenceQuery
from schema.extensions import QueryLimits, documents, extensions
from schema.feed import ChangeQuery, ChangeSubscription
from schema.learners import LearnerMutation, LearnerQuery
from schema.licences import LicenceMutation, LicenceQuery
from schema.nodes import NODE_TYPES, NodeQuery
from schema.organisations import OrganisationMutation, OrganisationQuery
from schema.people import PeopleMutation, PeopleQuery
from schema.records import RecordMutation, RecordQuery
from schema.rules import RuleMutation, RuleQuery
from schema.scalars import SCALAR_MAP
from schema.webhooks import WebhookMutation, WebhookQuery

log = logging.getLogger("caseload.graphql")

Query = merge_types(
    "Query",
    (
        NodeQuery,
        PeopleQuery,
        LearnerQuery,
        RecordQuery,
        LicenceQuery,
        RuleQuery,
        AuditQuery,
        ChangeQuery,
        ApiKeyQuery,
        WebhookQuery,
        EvidenceQuery,
        OrganisationQuery,
    ),
)
Mutation = merge_types(
    "Mutation",
    (
        OrganisationMutation,
        PeopleMutation,
        LearnerMutation,
        RecordMutation,
        AllocationMutation,
        EvidenceMutation,
        AssignmentMutation,
        LicenceMutation,
        RuleMutation,
        ApiKeyMutation,
        WebhookMutation,
    ),
)

# merge_types takes no description: the merged types get theirs here.
Query.__strawberry_definition__.description = (  # type: ignore[attr-defined]
    "What the caller may read. Every list and object goes through the caller's scopes: what they "
    "may not see does not exist for them (null, or absent from lists and counts)."
)
Mutation.__strawberry_definition__.description = (  # type: ignore[attr-defined]
    "What the caller may change. Each mutation takes one `input` and answers a union of its "
    "success type and its errors; a role that never holds the action answers a top-level "
    "FORBIDDEN, an id the caller cannot see `NotFoundError`. Send `Idempotency-Key` to retry "
    "safely."
)
Subscription = merge_types("Subscription", (ChangeSubscription,))
Subscription.__strawberry_definition__.description = (  # type: ignore[attr-defined]
    "What the caller may follow live, over the websocket on /graphql (graphql-transport-ws). "
    "Every event is read under the caller's scopes when it is delivered."
)


class CaseloadSchema(strawberry.Schema):
    documents: Documents  # parsed once per request, kept for callers who signed in

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Log only what is unexpected; expected refusals are answers, not incidents."""
        for error in errors:
            original = error.original_error
            if original is not None and not isinstance(original, OperationError | GraphQLError):
                log.error("unexpected error", exc_info=original)


def build_schema(limits: QueryLimits | None = None) -> strawberry.Schema:
    limits = limits or QueryLimits()
    built = CaseloadSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=[*NODE_TYPES.values(), *ERROR_TYPES.values(), ErrorCode],
        extensions=extensions(limits),  # type: ignore[arg-type]
        config=StrawberryConfig(disable_field_suggestions=True, scalar_map=SCALAR_MAP),
    )
    built.documents = documents(built._schema, limits)
    return built


schema: Any = build_schema()
