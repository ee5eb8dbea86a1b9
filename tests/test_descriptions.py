"""Every part of the schema says what it is: types, fields, arguments (with the defaults the
server applies), input fields, enum values and unions, `Query` and `Mutation` included."""

from __future__ import annotations

from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLUnionType,
)

from schema import schema


def undescribed(sdl: GraphQLSchema) -> list[str]:
    """Every schema coordinate without a description."""
    missing: list[str] = []
    for name, kind in sdl.type_map.items():
        if name.startswith("__"):
            continue
        if not kind.description:
            missing.append(name)
        if isinstance(kind, GraphQLObjectType | GraphQLInterfaceType):
            for field_name, field in kind.fields.items():
                if not field.description:
                    missing.append(f"{name}.{field_name}")
                missing += [
                    f"{name}.{field_name}({arg})"
                    for arg, a in field.args.items()
                    if not a.description
                ]
        elif isinstance(kind, GraphQLInputObjectType):
            missing += [f"{name}.{f}" for f, field in kind.fields.items() if not field.description]
        elif isinstance(kind, GraphQLEnumType):
            missing += [f"{name}.{v}" for v, value in kind.values.items() if not value.description]
    return missing


def test_every_part_of_the_schema_is_described() -> None:
    assert undescribed(schema._schema) == []


def test_arguments_say_the_default_the_server_applies() -> None:
    for kind in schema._schema.type_map.values():
        if not isinstance(kind, GraphQLObjectType):
            continue
        for field_name, field in kind.fields.items():
            first = field.args.get("first")
            if first is not None:
                wanted = (
                    "when not given (and `last` is not either): 50"
                    if "last" in field.args
                    else "when not given: 50"  # a forward-only list (the change feed)
                )
                assert first.description and wanted in first.description, (
                    f"{kind.name}.{field_name}(first)"
                )
            for arg_name, arg in field.args.items():
                optional = not isinstance(arg.type, GraphQLNonNull)
                if optional and arg.default_value is None and not arg.deprecation_reason:
                    assert arg.description and "not given" in arg.description, (
                        f"{kind.name}.{field_name}({arg_name}): say what leaving it out means"
                    )


def test_unions_name_their_members() -> None:
    """A mutation's result union says which of its members is the success."""
    for kind in schema._schema.type_map.values():
        if isinstance(kind, GraphQLUnionType):
            successes = [m.name for m in kind.types if not m.name.endswith("Error")]
            assert successes and all(
                f"`{name}`" in (kind.description or "") for name in successes
            ), kind.name
