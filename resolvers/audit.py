"""The audit trail: who did what to which object, when, and from which client."""

from __future__ import annotations

from functools import cached_property

from strawberry.dataloader import DataLoader

from db.models import AuditEvent
from policies.vocabulary import Resource
from resolvers.context import LoaderGroup
from resolvers.loaders import scoped_by_id


class AuditLoaders(LoaderGroup):
    @cached_property
    def event(self) -> DataLoader[int, AuditEvent | None]:
        return scoped_by_id(self.ctx, AuditEvent, Resource.AUDIT_EVENT)
