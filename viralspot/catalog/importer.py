"""``flask content import FILE``: JSON Lines of content objects, upserted by ``content_id``::

    {"content_id": "3312", "shortcode": "C9xYz", "content_type": "reel", "date_posted": "2026-05-01T12:00:00Z",
     "username": "chef_anna", "view_count": 120000, ..., "followers": 48000, "profile_language": "en"}

Fields use the ``content`` and ``primary_profiles`` column names (``profile_language`` for the
profile's language); other keys are ignored. An existing ``content_id`` is updated with the fields
the line gives, a new one inserted; the author's profile is created or updated by ``username``.

A bad line (invalid JSON, a missing or malformed field: a count that is not a whole number, a text
over its column or ``MAX_TEXT`` characters; a shortcode owned by another content_id) is
rejected with its line number, never stopping the import nor leaving a partial row: lines are written
in chunks, one transaction each, and a chunk that fails in the database is replayed line by line.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import Boolean, Connection, Engine, Integer, select
from sqlalchemy.exc import DBAPIError, OperationalError

from ..clock import parse_instant
from .filters import CONTENT_TYPES, normalize_content_type
from .queries import bump_version
from .rendering import render_items
from .tables import DERIVED_COLUMNS, MAX_CONTENT_KEY, content, primary_profiles

CHUNK_LINES = 500
#: Required, and stripped when written: a blank one rejects the line.
_IDENTIFIERS = ("content_id", "shortcode", "username")
_COUNT = validate.Range(min=0, max=2 ** 62)
#: Characters a text field without a column length holds at most (a caption is 2,200 on Instagram;
#: one line's 200 MB description made a 419 MB page), and URLs an item lists at most.
MAX_TEXT = 20_000
MAX_IMAGE_URLS = 100

#: The content columns a line may give: not the keys, the bookkeeping dates nor the derived columns.
CONTENT_FIELDS = tuple(column.name for column in content.c if column.name not in (
    "id", "profile_id", "created_at", "updated_at", *DERIVED_COLUMNS))
#: import key -> primary_profiles column: all but the key, the username and the bookkeeping dates.
PROFILE_FIELDS = {("profile_language" if column.name == "language" else column.name): column.name
                  for column in primary_profiles.c if column.name not in ("id", "username", "created_at", "updated_at")}


class ContentTypeField(fields.String):
    def _deserialize(self, value, attr, data, **kwargs):
        kind = normalize_content_type(super()._deserialize(value, attr, data, **kwargs))
        if kind not in CONTENT_TYPES:
            raise ValidationError(f"must be one of {', '.join(CONTENT_TYPES)} (or an alias)")
        return kind


class UtcDateTime(fields.AwareDateTime):
    """ISO 8601; a naive value is taken as UTC."""

    def __init__(self, **kwargs):
        super().__init__(default_timezone=timezone.utc, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        # Stored in UTC: SQLite keeps no offset, so a +02:00 time must be converted, not relabelled.
        try:
            return parse_instant(super()._deserialize(value, attr, data, **kwargs))
        except ValueError as error:  # 0001-01-01T00:00:00+01:00: before year 1 in UTC
            raise ValidationError(str(error)) from None


class Number(fields.Float):
    """A finite number; -0.0 is read as 0.0 (PostgreSQL would keep its sign, SQLite does not)."""

    def __init__(self, **kwargs):
        super().__init__(allow_nan=False, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value, attr, data, **kwargs) + 0.0


def _column_field(column) -> fields.Field:
    """The field of a plain column: a boolean, a count, or nullable text no longer than the column."""
    if isinstance(column.type, Boolean):
        return fields.Boolean()
    if isinstance(column.type, Integer):
        return fields.Integer(strict=True, validate=_COUNT)  # 1.9 or "12" rejected, not truncated or read
    return fields.String(allow_none=True, validate=validate.Length(max=column.type.length or MAX_TEXT))


_SPECIAL_FIELDS = {
    **{name: fields.String(required=True, validate=validate.Length(min=1, max=255)) for name in _IDENTIFIERS},
    "content_type": ContentTypeField(required=True),
    "date_posted": UtcDateTime(required=True),
    "outlier_score": Number(validate=validate.Range(min=0)),
    "categorization_confidence": Number(allow_none=True),
    "all_image_urls": fields.List(fields.String(validate=validate.Length(max=MAX_TEXT)), allow_none=True,
                                  validate=validate.Length(max=MAX_IMAGE_URLS)),
}
_COLUMNS = {**{name: content.c[name] for name in CONTENT_FIELDS},
            **{key: primary_profiles.c[column] for key, column in PROFILE_FIELDS.items()}}


class ImportRecordSchema(Schema.from_dict({name: _SPECIAL_FIELDS.get(name) or _column_field(column)
                                           for name, column in _COLUMNS.items()})):
    """One JSON line: content fields and the author's profile fields, checked against their columns."""

    class Meta:
        unknown = EXCLUDE

    @validates_schema
    def strip_identifiers(self, data, **kwargs):
        for name in _IDENTIFIERS:
            if name in data and not data[name].strip():
                raise ValidationError("must not be blank", field_name=name)

    @validates_schema
    def refuse_nul(self, data, **kwargs):
        """PostgreSQL's text cannot hold NUL, SQLite's can: refused on both (one file, one catalog)."""
        for name, value in data.items():
            texts = value if isinstance(value, list) else [value]
            if any(isinstance(text, str) and "\x00" in text for text in texts):
                raise ValidationError("must not contain NUL (\\u0000)", field_name=name)


@dataclass
class ImportReport:
    inserted: int = 0
    updated: int = 0
    #: (line number, reason) of each rejected line
    errors: list[tuple[int, str]] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        return len(self.errors)


class LineRejected(Exception):
    """A line that cannot be imported; the message says why."""


_schema = ImportRecordSchema()


def _utf8(line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as error:
        raise LineRejected(f"not UTF-8 text (byte {error.start + 1} of the line)") from None


def parse_line(text: str) -> dict:
    """The validated record of one JSON line, or ``LineRejected``."""
    try:
        raw = json.loads(text)
    except ValueError as error:
        raise LineRejected(f"invalid JSON: {error}") from None
    if not isinstance(raw, dict):
        raise LineRejected("expected a JSON object")
    try:  # a lone surrogate (an escaped "\\ud800") has no UTF-8 form: nothing could store or serve it
        json.dumps(raw, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise LineRejected("a string holds a lone surrogate (an escape such as \\ud800 with no pair)") from None
    try:
        return _schema.load(raw)
    except ValidationError as error:
        parts = [f"{name}: {'; '.join(map(str, messages)) if isinstance(messages, list) else messages}"
                 for name, messages in sorted(error.normalized_messages().items())]
        raise LineRejected(", ".join(parts)) from None


@dataclass
class RenderPending:
    """What a chunk's writes changed, rendered once before the chunk commits (catalog/rendering.py)
    with the catalog version the chunk's transaction bumped first."""

    version: int
    content_ids: set[int] = field(default_factory=set)
    profile_ids: set[int] = field(default_factory=set)

    def commit(self, conn: Connection) -> int:
        """Render the changed items with the chunk's version; the number rendered."""
        if not (self.content_ids or self.profile_ids):
            return 0
        return render_items(conn, version=self.version, content_ids=self.content_ids, profile_ids=self.profile_ids)


def _upsert_profile(conn: Connection, record: dict, now: datetime, pending: RenderPending) -> int:
    values = {column: record[key] for key, column in PROFILE_FIELDS.items() if key in record}
    username = record["username"].strip()
    existing = conn.execute(select(primary_profiles.c.id, *(primary_profiles.c[column] for column in values))
                            .where(primary_profiles.c.username == username)).first()
    if existing is not None:
        key, *stored = existing
        # Only a change re-renders the author's items: lines repeating a profile as it is re-rendered
        # every item of their authors at each chunk (10,000 new lines of 5 authors on SQLite: 11.3 s,
        # now 6.8; 5.9 without profile fields).
        if any(old != new for old, new in zip(stored, values.values())):
            conn.execute(primary_profiles.update().where(primary_profiles.c.id == key).values(**values, updated_at=now))
            pending.profile_ids.add(int(key))  # its fields are part of each of its items
        return int(key)
    values = {"followers": 0, "is_verified": False, "is_business_account": False, **values}
    result = conn.execute(primary_profiles.insert().values(username=username, created_at=now, updated_at=now, **values))
    return int(result.inserted_primary_key[0])


class ContentKeysExhausted(Exception):
    """A new row's id would pass ``MAX_CONTENT_KEY``: the import stops, its chunk rolled back."""


def write_record(conn: Connection, record: dict, pending: RenderPending) -> bool:
    """Upsert one validated record; True when inserted, False when updated. ``LineRejected`` on a conflict.
    The items it changes are collected in ``pending``, to render before the transaction commits."""
    now = datetime.now(timezone.utc)
    content_id = record["content_id"].strip()
    shortcode = record["shortcode"].strip()
    owner = conn.execute(select(content.c.content_id).where(content.c.shortcode == shortcode)).scalar()
    if owner is not None and owner != content_id:
        raise LineRejected(f"shortcode {shortcode!r} already belongs to content_id {owner!r}")
    values = {name: record[name] for name in CONTENT_FIELDS if name in record}
    values.update(content_id=content_id, shortcode=shortcode, username=record["username"].strip())
    values["profile_id"] = _upsert_profile(conn, record, now, pending)
    existing = conn.execute(select(content.c.id).where(content.c.content_id == content_id)).scalar()
    if existing is not None:
        conn.execute(content.update().where(content.c.id == existing).values(**values, updated_at=now))
        pending.content_ids.add(int(existing))
        return False
    key = int(conn.execute(content.insert().values(**values, created_at=now, updated_at=now)).inserted_primary_key[0])
    if key > MAX_CONTENT_KEY:
        raise ContentKeysExhausted(f"content id {key} would exceed {MAX_CONTENT_KEY}, the largest key random feeds "
                                   "hold; nothing of this chunk was written")
    pending.content_ids.add(key)
    return True


def _write_chunk(engine: Engine, chunk: list[tuple[int, dict]], report: ImportReport) -> None:
    """Write one chunk in one transaction; the report is updated only when it commits."""
    written: list[bool] = []  # for each line written: True when inserted, False when updated
    rejected: list[tuple[int, str]] = []
    with engine.begin() as conn:
        # The version first: its row stays locked until this transaction ends, so writers take turns.
        # New content keys come from a sequence at INSERT and are seen at COMMIT; in turns they are
        # seen in the order they were handed out, and a feed that has passed the largest key it saw
        # never finds a smaller one committed after (it would never serve it).
        pending = RenderPending(bump_version(conn))
        for line_number, record in chunk:
            try:
                written.append(write_record(conn, record, pending))
            except LineRejected as error:
                rejected.append((line_number, str(error)))
        if written:
            pending.commit(conn)  # in the chunk's transaction: items, rows and version commit together
        else:  # every line was rejected before it wrote anything: the catalog, and its version, stay
            conn.get_transaction().rollback()
    report.inserted += sum(written)
    report.updated += len(written) - sum(written)
    report.errors.extend(rejected)


def _flush(engine: Engine, chunk: list[tuple[int, dict]], report: ImportReport) -> None:
    try:
        _write_chunk(engine, chunk, report)
    except OperationalError:
        raise  # the database is down: stop, nothing of this chunk was committed
    except DBAPIError:
        # A constraint refused a line: replay the chunk one line per transaction to reject it alone.
        for line_number, record in chunk:
            try:
                _write_chunk(engine, [(line_number, record)], report)
            except OperationalError:
                raise
            except DBAPIError as error:
                report.errors.append((line_number, f"refused by the database: {type(error.orig).__name__}"))


def import_lines(engine: Engine, lines: Iterable[str | bytes], progress: Callable[[int], None] | None = None,
                 chunk_lines: int = CHUNK_LINES) -> ImportReport:
    """Import JSON Lines, as text or as UTF-8 bytes (a line that is not UTF-8 is rejected, the rest
    imported); ``progress`` gets the characters (or bytes) consumed after each line."""
    report = ImportReport()
    chunk: list[tuple[int, dict]] = []
    for line_number, text in enumerate(lines, start=1):
        if progress:
            progress(len(text))
        try:
            if isinstance(text, bytes):
                text = _utf8(text)
            if line_number == 1:
                text = text.removeprefix("\ufeff")  # a byte order mark, as editors on Windows write
            if not text.strip():
                continue
            chunk.append((line_number, parse_line(text)))
        except LineRejected as error:
            report.errors.append((line_number, str(error)))
        if len(chunk) >= chunk_lines:
            _flush(engine, chunk, report)
            chunk = []
    if chunk:
        _flush(engine, chunk, report)
    report.errors.sort()
    return report
