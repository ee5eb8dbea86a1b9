"""Documents named instead of sent: automatic persisted queries and trusted documents.

Automatic persisted queries (Apollo's protocol, version 1): a request may send
`extensions.persistedQuery.sha256Hash` alone. The hash names a document once a request has sent
it together with that document and the document was kept for a caller who signed in
(schema/documents.py `Documents.keep`); until then the answer is PERSISTED_QUERY_NOT_FOUND, with
HTTP 200 and Apollo's message, which Apollo's clients take as "send the document too". A hash
that is not the document's is refused (PERSISTED_QUERY_HASH_MISMATCH) and registers nothing.

Trusted documents (`CASELOAD_TRUSTED_DOCUMENTS`): a JSON file mapping each document's id to its
text, as GraphQL codegen's client preset writes `persisted-documents.json`. Then only these
documents run, named by `documentId` (GraphQL over HTTP's persisted documents) or by their
SHA-256 in `extensions.persistedQuery`; a document sent as text is refused
(PERSISTED_QUERY_ONLY), an unknown id too (TRUSTED_DOCUMENT_NOT_FOUND). They are parsed and
validated when the server starts, which refuses to start on a file it cannot use.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from resolvers.codes import ErrorCode
from schema.documents import Documents
from server.http import MAX_DOCUMENT_ID, GraphQLBody, Refused, SentBody
from server.settings import ConfigurationError

# Apollo's clients match this message (older ones) or the code (newer ones) to send the
# document again with its hash.
NOT_FOUND = "PersistedQueryNotFound"
SHA256_PREFIX = "sha256:"  # GraphQL over HTTP's prefixed document identifiers


def sha256_of(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()


@dataclass(frozen=True)
class TrustedDocuments:
    """The documents this server runs, by id and by the SHA-256 of their text."""

    by_id: dict[str, str]
    by_hash: dict[str, str]

    def find(self, document_id: str) -> str | None:
        found = self.by_id.get(document_id)
        if found is None and document_id.startswith(SHA256_PREFIX):
            found = self.by_hash.get(document_id.removeprefix(SHA256_PREFIX).lower())
        return found


def load_trusted(path: Path, documents: Documents) -> TrustedDocuments:
    """The file's documents, each parsed, validated and pinned in `documents`; a file that
    cannot be used raises ConfigurationError saying why."""
    where = f"CASELOAD_TRUSTED_DOCUMENTS ({path})"
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{where} cannot be read: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ConfigurationError(f"{where} is not JSON: {exc}") from None
    if not isinstance(data, dict) or not data:
        raise ConfigurationError(
            f"{where} must be a JSON object mapping each document's id to the document, "
            'e.g. {"<sha256>": "query Learners { … }"}, as GraphQL codegen\'s client preset '
            "writes persisted-documents.json."
        )
    by_id: dict[str, str] = {}
    by_hash: dict[str, str] = {}
    for document_id, text in data.items():
        if not 0 < len(document_id) <= MAX_DOCUMENT_ID:
            raise ConfigurationError(
                f"{where}: an id must be 1 to {MAX_DOCUMENT_ID} characters: {document_id[:40]!r}."
            )
        if not isinstance(text, str) or not text.strip():
            raise ConfigurationError(f"{where}: the document {document_id!r} is not a string.")
        prepared = documents.prepare(text)
        if not prepared.valid:
            error = prepared.errors[0]
            raise ConfigurationError(
                f"{where}: the document {document_id!r} does not validate against this "
                f"server's schema: {error.message}"
            )
        documents.pin(prepared)
        by_id[document_id] = prepared.query
        by_hash[sha256_of(prepared.query)] = prepared.query
    return TrustedDocuments(by_id, by_hash)


def resolve(
    sent: SentBody, documents: Documents, trusted: TrustedDocuments | None
) -> tuple[GraphQLBody, str | None]:
    """The body with its document, and the hash to register for it if its request keeps it
    (None: nothing to register); Refused when the document cannot be run."""
    if trusted is not None:
        return sent.with_query(_trusted(sent, trusted)), None
    if sent.document_id is not None:
        raise Refused(
            400,
            ErrorCode.TRUSTED_DOCUMENT_NOT_FOUND,
            "This server has no trusted documents (CASELOAD_TRUSTED_DOCUMENTS): send the "
            "document as `query`.",
        )
    if sent.sha256 is None:
        assert sent.query is not None
        return sent.with_query(sent.query), None
    if sent.query is None:
        text = documents.registered.get(sent.sha256)
        if text is None:
            raise Refused(200, ErrorCode.PERSISTED_QUERY_NOT_FOUND, NOT_FOUND)
        return sent.with_query(text), None
    _same(sent.query, sent.sha256)
    return sent.with_query(sent.query), sent.sha256


def _trusted(sent: SentBody, trusted: TrustedDocuments) -> str:
    if sent.document_id is not None:
        text = trusted.find(sent.document_id)
        if text is None:
            raise Refused(
                400,
                ErrorCode.TRUSTED_DOCUMENT_NOT_FOUND,
                f"No trusted document has the id {sent.document_id[:MAX_DOCUMENT_ID]!r}.",
            )
        if sent.sha256 is not None and sha256_of(text) != sent.sha256:
            _mismatch()
        return text
    if sent.sha256 is None:
        raise Refused(
            400,
            ErrorCode.PERSISTED_QUERY_ONLY,
            "This server runs only its trusted documents: send `documentId` (or the "
            "document's SHA-256 in `extensions.persistedQuery`) instead of `query`.",
        )
    text = trusted.by_hash.get(sent.sha256)
    if sent.query is not None:
        _same(sent.query, sent.sha256)
    elif text is None:
        text = trusted.by_id.get(sent.sha256)  # a file whose ids are SHA-256 of other text
    if text is None:
        raise Refused(
            400,
            ErrorCode.TRUSTED_DOCUMENT_NOT_FOUND,
            "No trusted document has this SHA-256 (`extensions.persistedQuery.sha256Hash`).",
        )
    return text


def _same(query: str, sha256: str) -> None:
    if sha256_of(query) != sha256:
        _mismatch()


def _mismatch() -> NoReturn:
    raise Refused(
        400,
        ErrorCode.PERSISTED_QUERY_HASH_MISMATCH,
        "`extensions.persistedQuery.sha256Hash` is not the SHA-256 of the document sent "
        "(hex of the UTF-8 text, exactly as sent).",
    )
