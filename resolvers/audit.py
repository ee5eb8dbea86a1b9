"""The audit trail: who did what to which object, when, and from which client."""

from __future__ import annotations

from db.models import AuditEvent
from policies.vocabulary import Resource
from resolvers.context import LoaderGroup
from resolvers.loaders import scoped


class AuditLoaders(LoaderGroup):
    event = scoped(AuditEvent, Resource.AUDIT_EVENT)
