"""Relay global ids: opaque base64 of "Type:pk"."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

MAX_PK = 2**63 - 1


class _GlobalIdMarker:
    """Marks a `str` that is a global id, so the schema shows it as `ID`."""


GLOBAL_ID = _GlobalIdMarker()
GlobalId = Annotated[str, GLOBAL_ID]


class MalformedId(ValueError):
    pass


# base64.urlsafe_b64encode, without its two Python calls (a page encodes hundreds of ids).
_URL_SAFE = bytes.maketrans(b"+/", b"-_")


def encode_id(type_name: str, pk: int) -> str:
    raw = binascii.b2a_base64(f"{type_name}:{pk}".encode(), newline=False)
    return raw.translate(_URL_SAFE).decode().rstrip("=")


def decode_id(value: str) -> tuple[str, int]:
    """Split a global id into (type name, primary key); MalformedId when it is not one."""
    if not value or len(value) > 200:
        raise MalformedId(value)
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise MalformedId(value) from exc
    type_name, sep, pk_text = raw.partition(":")
    # ASCII only: str.isdigit() holds for "²", which int() then refuses.
    if not sep or not raw.isascii() or not type_name.isidentifier() or not pk_text.isdigit():
        raise MalformedId(value)
    pk = int(pk_text)
    if pk < 1 or pk > MAX_PK or pk_text != str(pk):
        raise MalformedId(value)
    return type_name, pk


# Tables whose GraphQL type has another name.
TYPE_NAMES: dict[str, str] = {"RecordAssignment": "Assignment"}


def type_name_of(model: type) -> str:
    """The GraphQL type name of a table's rows."""
    return TYPE_NAMES.get(model.__name__, model.__name__)


def gid_of(row: Any) -> str:
    """A row's global id."""
    return encode_id(type_name_of(type(row)), row.id)


def pk_of(value: str, type_name: str) -> int | None:
    """The primary key if `value` is a well-formed id of `type_name`, else None."""
    try:
        found, pk = decode_id(value)
    except MalformedId:
        return None
    return pk if found == type_name else None
