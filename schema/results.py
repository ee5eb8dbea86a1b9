"""Mutation results: each mutation's union is derived from its use case's return annotation.

A use case returns one success outcome or one of the errors declared in resolvers/outcomes.
`answers` registers the GraphQL type of a success outcome; errors are derived. `mutation`
builds the field: it passes the input's fields to the use case and answers with the GraphQL
type of whatever outcome came back, which must be a member of the derived union. Each
mutation also declares what it answers when it is repeated (`repeat=`), and the README's table
of repeat answers is printed from those declarations (`caseload schema repeats`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar, Union, get_args

import strawberry
from strawberry.extensions import FieldExtension

from resolvers import outcomes
from resolvers.common import UNCHANGED
from schema.context import Info
from schema.derive import to_graphql
from schema.enums import AuditAction
from schema.errors import ERROR_TYPES
from schema.nodes import as_graphql

S = TypeVar("S", bound=type)

SUCCESS_TYPES: dict[type, type] = {}

UseCase = Callable[..., Awaitable[object]]

# Mutation field name → the audit event it writes when it changes something (None: nothing).
AUDITS: dict[str, AuditAction | None] = {}

# Mutation name → the use case it runs (for the schema walk in the tests).
USE_CASES: dict[str, UseCase] = {}


@dataclass(frozen=True)
class Repeat:
    """What a mutation answers when it is sent again after it succeeded, with the same input.

    The rule: repeating a completed action succeeds, says `unchanged` (true, or how many items
    were already so), changes nothing and writes no audit event. Creating something whose
    identity is taken answers an error instead; a few mutations create another each time.
    """

    answer: str  # how the table shows the second answer
    effect: str  # what it means, in a few words
    unchanged: bool = False  # the success type carries `unchanged`, set on a repeat
    error: type[outcomes.Problem] | None = None  # the error a repeat answers


def unchanged(effect: str) -> Repeat:
    """A repeat succeeds with `unchanged`, changes nothing and writes no audit event."""
    return Repeat("success, `unchanged`", effect, unchanged=True)


def refused(error: type[outcomes.Problem], effect: str) -> Repeat:
    """A repeat answers `error`, changes nothing and writes no audit event."""
    return Repeat(f"`{error.graphql_name}`", effect, error=error)


def another(effect: str) -> Repeat:
    """A repeat does it again: something new, with its audit event (retry with an
    Idempotency-Key to be answered the first result instead)."""
    return Repeat("success, another", effect)


def reads(effect: str) -> Repeat:
    """The mutation writes nothing: a repeat answers afresh."""
    return Repeat("success, read afresh", effect)


# Mutation name → what it answers when repeated (see `Repeat`).
REPEATS: dict[str, Repeat] = {}


def field_name(use_case: UseCase) -> str:
    """The mutation's GraphQL field name: the use case's name in camelCase."""
    head, *rest = use_case.__name__.split("_")
    return head + "".join(part.capitalize() for part in rest)


TABLE_START = "<!-- repeat answers: printed by `caseload schema repeats` -->\n"
TABLE_END = "<!-- end of repeat answers -->"


def with_repeat_table(text: str, table: str) -> str:
    """`text` (the README) with the table between its markers replaced by `table`."""
    head, rest = text.split(TABLE_START, 1)
    return head + TABLE_START + table + TABLE_END + rest.split(TABLE_END, 1)[1]


def repeat_table(fields: list[str]) -> str:
    """The README's table of every mutation's audit event and repeat answer, in the schema's
    field order."""
    lines = [
        "| mutation | audit event when it changes something | repeated with the same input "
        "| what happens |",
        "|---|---|---|---|",
    ]
    for name in fields:
        declared, audit = REPEATS[name], AUDITS[name]
        event = "none" if audit is None else f"`{audit.value}`"
        lines.append(f"| `{name}` | {event} | {declared.answer} | {declared.effect} |")
    return "\n".join(lines) + "\n"


def answers(outcome: type) -> Callable[[S], S]:
    """Register a GraphQL type as the answer to a use case's success outcome.

    Its fields take the outcome's attributes of the same names, rows as their Node types.
    """

    def register(cls: S) -> S:
        SUCCESS_TYPES[outcome] = cls
        return cls

    return register


def outcomes_of(use_case: UseCase) -> tuple[type, ...]:
    """The outcome types a use case declares it returns, in order."""
    hint = eval(use_case.__annotations__["return"], use_case.__globals__)
    return get_args(hint) or (hint,)


def graphql_type(outcome: type) -> type:
    if outcome in SUCCESS_TYPES:
        return SUCCESS_TYPES[outcome]
    if outcome in ERROR_TYPES:
        return ERROR_TYPES[outcome]
    raise TypeError(f"{outcome.__name__} is neither a registered success nor a declared error")


def answer(outcome: object, allowed: tuple[type, ...]) -> object:
    """The GraphQL value of an outcome, which must be one the use case declared."""
    kind = type(outcome)
    if kind not in allowed:
        raise TypeError(f"{kind.__name__} is not a declared outcome ({allowed})")
    if isinstance(outcome, outcomes.Problem):
        return to_graphql(outcome, code=outcome.code)
    success = SUCCESS_TYPES[kind]
    # Plain fields and private ones (what a field with arguments computes its answer from).
    names = [f.name for f in dataclasses.fields(success) if f.init]
    return success(**{n: as_graphql(getattr(outcome, n)) for n in names})


def camel(snake: str) -> str:
    return "".join(part.capitalize() for part in snake.split("_"))


# Each use case's result union, built once: a read offered both as a query and as a
# (deprecated) mutation answers with the one union.
_UNIONS: dict[UseCase, Any] = {}


def _resolver(use_case: UseCase, input: type, fixed: dict[str, Any]) -> Callable[..., Any]:
    """The field resolver running `use_case(ctx, **fixed, **input fields)`."""
    allowed = outcomes_of(use_case)
    field = field_name(use_case)
    if use_case not in _UNIONS:
        success = " or ".join(
            f"`{graphql_type(o).__name__}`" for o in allowed if o in SUCCESS_TYPES
        )
        _UNIONS[use_case] = Annotated[
            Union[tuple(graphql_type(o) for o in allowed)],  # noqa: UP007 - built at run time
            strawberry.union(
                f"{camel(use_case.__name__)}Result",
                description=f"What `{field}` answers: {success} when it is done, else one of "
                "its errors (each implements `Error`; nothing was changed).",
            ),
        ]
    input_name = input.__strawberry_definition__.name  # type: ignore[attr-defined]
    described: Any = Annotated[
        input,
        strawberry.argument(
            description=f"What `{field}` is asked to do; each field is described on `{input_name}`."
        ),
    ]

    async def resolve(self: Any, info: Info, input: Any) -> object:
        # A field left out of the input (UNSET) reaches the use case as UNCHANGED.
        given = {k: UNCHANGED if v is strawberry.UNSET else v for k, v in vars(input).items()}
        outcome = await use_case(info.context, **fixed, **given)
        return answer(outcome, allowed)

    resolve.__annotations__ = {"info": Info, "input": described, "return": _UNIONS[use_case]}
    resolve.__name__ = use_case.__name__
    return resolve


def mutation(
    use_case: UseCase,
    *,
    input: type,
    description: str,
    extensions: list[FieldExtension],
    audit: AuditAction | None,
    repeat: Repeat,
    deprecation_reason: str | None = None,
    **fixed: Any,
) -> Any:
    """A mutation field running `use_case(ctx, **fixed, **input fields)`: `extensions` guard
    it (the action and resource it needs), `audit` is the event it writes when it changes
    something (None: it writes nothing), `repeat` says what it answers when sent again."""
    resolve = _resolver(use_case, input, fixed)
    USE_CASES[use_case.__name__] = use_case
    REPEATS[field_name(use_case)] = repeat
    AUDITS[field_name(use_case)] = audit
    return strawberry.mutation(
        description=description, extensions=extensions, deprecation_reason=deprecation_reason
    )(resolve)


def read(
    use_case: UseCase,
    *,
    input: type,
    description: str,
    extensions: list[FieldExtension],
    **fixed: Any,
) -> Any:
    """A query field running a use case that changes nothing, answered as a mutation is: its
    success type or one of its error types."""
    return strawberry.field(description=description, extensions=extensions)(
        _resolver(use_case, input, fixed)
    )
