"""Evidence: learners (or admins) submit coursework; assessors sign it off or refer it back."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm.attributes import set_committed_value

from db.models import ApprenticeRecord, AuditAction, Evidence, EvidenceStatus, RecordStatus, User
from policies.vocabulary import Action, Resource
from resolvers.audit import audit
from resolvers.common import clean_name, filter_id, mutation_target
from resolvers.context import Context, Limits, LoaderGroup
from resolvers.ids import GlobalId, encode_id, gid_of
from resolvers.loaders import Children, scoped
from resolvers.outcomes import EvidenceLocked, Invalid, NotFound, RecordArchived, doc
from resolvers.pagination import FilterValues, ListSource, Sort
from resolvers.records import RECORDS_OF_LEARNER, archived_among
from resolvers.relations import Path, Ref

MAX_COMMENT = 5000

EVIDENCE_OF_RECORD = Children(Evidence, Evidence.record_id, Resource.EVIDENCE, (Evidence.id,))


RECORD_OF_EVIDENCE = Ref(ApprenticeRecord, "record_id", Resource.RECORD)
DECIDED_BY = Ref(User, "decided_by_id")
EVIDENCE_OF_LEARNER = Path(RECORDS_OF_LEARNER, EVIDENCE_OF_RECORD)


class EvidenceLoaders(LoaderGroup):
    evidence = scoped(Evidence, Resource.EVIDENCE)


@dataclass(frozen=True)
class EvidenceFilter:
    """Narrow the evidence queue."""

    status: EvidenceStatus | None = field(
        default=None, metadata=doc("Only evidence in this state (the queue: SUBMITTED).")
    )
    learner_id: GlobalId | None = field(default=None, metadata=doc("On this learner's records."))
    record_id: GlobalId | None = field(default=None, metadata=doc("On this record."))


def _prepare(
    _limits: Limits, f: EvidenceFilter | None, _arguments: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The filter's checked values; a malformed id is INVALID."""
    if f is None:
        return {}
    values: dict[str, Any] = {}
    if f.status is not None:
        values["status"] = f.status
    learner = filter_id(f.learner_id, "Learner", "learnerId")
    if learner is not None:
        values["learner"] = learner
    record = filter_id(f.record_id, "ApprenticeRecord", "recordId")
    if record is not None:
        values["record"] = record
    return values


def _conditions(ctx: Context, v: FilterValues) -> list[ColumnElement[bool]]:
    """Evidence on live records the caller can see (the queue's records)."""
    records = select(ApprenticeRecord.id).where(
        ctx.rules.where(Resource.RECORD), ApprenticeRecord.status == RecordStatus.LIVE
    )
    if "learner" in v:
        records = records.where(ApprenticeRecord.learner_id == v["learner"])
    found: list[ColumnElement[bool]] = [Evidence.record_id.in_(records.correlate(None))]
    if "status" in v:
        found.append(Evidence.status == v["status"])
    if "record" in v:
        found.append(Evidence.record_id == v["record"])
    return found


# The work queue: evidence on live records that the caller can see, oldest first.
WORK_QUEUE: ListSource[Evidence, EvidenceFilter] = ListSource(
    "evidence",
    Evidence,
    Resource.EVIDENCE,
    (Sort("SUBMITTED_AT", (Evidence.submitted_at,), "By when it was submitted."),),
    prepare=_prepare,
    conditions=_conditions,
)


class Decision(enum.StrEnum):
    SIGN_OFF = "SIGN_OFF"
    REFER = "REFER"


@dataclass(frozen=True)
class EvidenceSubmitted:
    evidence: Evidence


@dataclass(frozen=True)
class EvidenceDecided:
    evidence: Evidence
    unchanged: bool = False


DECIDED_AS = {Decision.SIGN_OFF: EvidenceStatus.SIGNED_OFF, Decision.REFER: EvidenceStatus.REFERRED}


def _decided_so(
    ctx: Context, evidence: Evidence, status: EvidenceStatus, comment: str | None
) -> bool:
    """The caller decided the evidence as asked already: the same decision and comment. Anyone
    else's decision locks it (EvidenceLocked), so that two assessors at once get one winner."""
    return (
        evidence.status == status
        and evidence.comment == comment
        and evidence.decided_by_id == ctx.me.user_id
    )


async def submit_evidence(
    ctx: Context, *, record_id: str, title: str
) -> EvidenceSubmitted | Invalid | NotFound | RecordArchived:
    record = await mutation_target(
        ctx, record_id, ApprenticeRecord, "recordId", Action.SUBMIT_EVIDENCE
    )
    if isinstance(record, Invalid | NotFound):
        return record
    if await archived_among(ctx, [record.id]):
        return RecordArchived(id=record_id)
    clean = clean_name(title, "title", limit=300)
    if isinstance(clean, Invalid):
        return clean
    evidence = Evidence(
        organisation_id=record.organisation_id,
        record_id=record.id,
        title=clean,
        status=EvidenceStatus.SUBMITTED,
        submitted_at=ctx.now,
        submitted_by_id=ctx.me.user_id,
    )
    await ctx.db.add(evidence)
    await audit(
        ctx,
        AuditAction.EVIDENCE_SUBMITTED,
        evidence,
        organisation_id=record.organisation_id,
        details={"recordId": gid_of(record)},
    )
    return EvidenceSubmitted(evidence)


async def sign_off_evidence(
    ctx: Context, *, evidence_id: str, decision: Decision, comment: str | None
) -> EvidenceDecided | Invalid | NotFound | EvidenceLocked | RecordArchived:
    evidence = await mutation_target(ctx, evidence_id, Evidence, "evidenceId", Action.DECIDE)
    if isinstance(evidence, Invalid | NotFound):
        return evidence
    if await archived_among(ctx, [evidence.record_id]):
        return RecordArchived(id=encode_id("ApprenticeRecord", evidence.record_id))
    text = (comment or "").strip() or None
    if decision is Decision.REFER and text is None:
        return Invalid("Say why the evidence is referred back.", field="comment")
    if text is not None and len(text) > MAX_COMMENT:
        return Invalid(f"comment must be at most {MAX_COMMENT} characters.", field="comment")
    status = DECIDED_AS[decision]
    if evidence.status != EvidenceStatus.SUBMITTED:
        if _decided_so(ctx, evidence, status, text):
            return EvidenceDecided(evidence, unchanged=True)
        return EvidenceLocked(id=evidence_id)
    # Conditional on the status, so two assessors deciding at once cannot both win.
    decided = await ctx.db.execute(
        update(Evidence)
        .where(Evidence.id == evidence.id, Evidence.status == EvidenceStatus.SUBMITTED)
        .values(status=status, decided_by_id=ctx.me.user_id, decided_at=ctx.now, comment=text)
    )
    if decided.rowcount != 1:  # type: ignore[attr-defined]
        current = await ctx.db.scalar(
            select(Evidence)
            .where(Evidence.id == evidence.id)
            .execution_options(populate_existing=True)
        )
        if current is not None and _decided_so(ctx, current, status, text):
            return EvidenceDecided(current, unchanged=True)
        return EvidenceLocked(id=evidence_id)
    for name, value in (
        ("status", status),
        ("decided_by_id", ctx.me.user_id),
        ("decided_at", ctx.now),
        ("comment", text),
    ):
        set_committed_value(evidence, name, value)
    await audit(
        ctx,
        AuditAction.EVIDENCE_DECIDED,
        evidence,
        organisation_id=evidence.organisation_id,
        details={
            "decision": decision.value,
            "recordId": encode_id("ApprenticeRecord", evidence.record_id),
        },
    )
    return EvidenceDecided(evidence)
