"""The ``flask`` commands: ``flask sessions list | show | reset | stats`` and
``flask content seed | import | render | snapshot | stats``."""
from __future__ import annotations

import itertools
import json
import os
import time

import click
from flask import current_app
from flask.cli import AppGroup
from marshmallow import ValidationError
from sqlalchemy.exc import OperationalError
from tqdm import tqdm

from .catalog.answer_deadline import deadline_lifted
from .catalog.importer import ContentKeysExhausted, import_lines
from .catalog.item_snapshot import CatalogChanged
from .catalog.queries import bump_version, catalog_state, content_count, counts_by_type_and_category
from .catalog.rendering import render_items
from .catalog.seed import CatalogNotEmpty, seed_catalog
from .clock import app_clock, parse_instant, utc_timestamp
from .extensions import catalog, session_store
from .schemas.session_id import validate_session_id
from .session.inspection import session_document
from .session.reset import reset_session
from .store import SessionStoreBackend, StoreUnavailable


class Commands(AppGroup):
    """A command group whose commands end in one line, not a traceback, when the session store or
    the catalog database cannot be reached."""

    def invoke(self, ctx: click.Context):
        try:
            with deadline_lifted():  # a command's long statements are meant (a request's are not)
                return super().invoke(ctx)
        except StoreUnavailable as error:
            raise click.ClickException(f"the session store is unavailable ({error})") from None
        except OperationalError as error:
            raise click.ClickException("the catalog database is unavailable "
                                       f"({type(error.orig or error).__name__}); see VIRALSPOT_DATABASE_URL") from None


sessions_cli = Commands("sessions", help="Inspect and reset random-feed sessions.")


def _store() -> SessionStoreBackend:
    """The app's session store; for one that lives inside each server process, say so first."""
    store = session_store.backend
    if not store.shared:
        click.echo(f"note: {store.storage_type} sessions live inside each server process; this command sees "
                   "only its own process's sessions, not a running server's. Set "
                   "VIRALSPOT_SESSION_STORE_URL=redis://... to share them.", err=True)
    return store


def _session_id(_ctx, _param, value: str) -> str:
    try:
        return validate_session_id(value)
    except ValidationError as error:
        raise click.BadParameter(str(error.messages[0])) from None


@sessions_cli.command("list")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
def list_sessions(limit: int) -> None:
    """Most recently used sessions."""
    store = _store()
    click.echo(f"{store.session_count()} sessions in {store.storage_type}")
    for session_id in store.session_ids(limit):
        click.echo(session_id)


@sessions_cli.command("stats")
def session_stats() -> None:
    """The store's kind, active sessions and what it knows of its own use, as JSON."""
    click.echo(json.dumps(_store().stats(), indent=2))


@sessions_cli.command("show")
@click.argument("session_id", callback=_session_id)
def show_session(session_id: str) -> None:
    """One session's served count and feeds, as JSON (last_seen_at is read off the TTL left: run
    with the server's VIRALSPOT_SESSION_TTL)."""
    summary = _store().summary(session_id)
    if summary is None:
        raise click.ClickException(f"no session {session_id} (unknown, expired or reset)")
    click.echo(json.dumps(session_document(summary), indent=2))


@sessions_cli.command("reset")
@click.argument("session_id", callback=_session_id)
def reset_session_command(session_id: str) -> None:
    """Reset a session, as POST /api/reset-session does."""
    _data, message = reset_session(_store(), session_id)
    click.echo(message)


content_cli = Commands("content", help="Seed, import and inspect the content catalog.")

#: Rejected lines printed in full; the rest are summarized.
MAX_ERRORS_SHOWN = 50


@content_cli.command("seed")
@click.option("--items", type=click.IntRange(0, 50_000_000), default=None,
              help="Content items to generate [default: SEED_ITEMS from the configuration].")
@click.option("--seed", "seed", type=click.IntRange(0, 2 ** 32 - 1), default=0, show_default=True,
              help="Random seed: the same seed and size give the same catalog.")
@click.option("--reference-date", "reference", default=None, metavar="INSTANT",
              help="ISO 8601 instant the two years of posting dates end at [default: now, by the "
                   "service's clock]: the same seed, size and reference date give the same catalog.")
@click.option("--if-empty", is_flag=True, help="Do nothing when the catalog already holds content.")
@click.option("--replace", is_flag=True, help="Delete the existing catalog first.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def seed_command(items: int | None, seed: int, reference: str | None, if_empty: bool, replace: bool,
                 progress: bool) -> None:
    """Generate a sample catalog (profiles, reels, posts) posted over the two years up to now."""
    if if_empty and replace:
        raise click.UsageError("--if-empty keeps a catalog that holds content, --replace deletes it: choose one")
    items = current_app.config["SEED_ITEMS"] if items is None else items
    try:
        reference_date = parse_instant(reference) if reference else app_clock().now()
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--reference-date") from None
    with catalog.connect() as conn:
        existing = content_count(conn)
    if existing and if_empty:
        click.echo(f"catalog already holds {existing} items; not seeding")
        return
    bar = tqdm(total=items, unit="items", desc="seeding", disable=not progress)
    try:
        report = seed_catalog(catalog.engine, items, seed, reference=reference_date, replace=replace,
                              progress=bar.update)
    except (CatalogNotEmpty, ContentKeysExhausted) as error:
        raise click.ClickException(str(error)) from None
    finally:
        bar.close()
    click.echo(f"seeded {report.items} items and {report.profiles} profiles (seed {seed}, posted up to "
               f"{utc_timestamp(reference_date)}) in {report.seconds:.1f} s")


@content_cli.command("import")
@click.argument("file", type=click.File("rb"))
@click.option("--progress/--no-progress", default=True, show_default=True)
def import_command(file, progress: bool) -> None:
    """Upsert content from a JSON Lines FILE ('-' for stdin), one content object per line; exit code 1
    when a line was rejected (the others are imported)."""
    total = os.path.getsize(file.name) if file.name not in ("<stdin>", "-") and os.path.isfile(file.name) else None
    bar = tqdm(total=total, unit="B", unit_scale=True, desc="importing", disable=not progress)
    try:
        report = import_lines(catalog.engine, file, progress=bar.update)
    except ContentKeysExhausted as error:
        raise click.ClickException(str(error)) from None
    finally:
        bar.close()
    for line_number, reason in report.errors[:MAX_ERRORS_SHOWN]:
        click.echo(f"line {line_number}: rejected: {reason}", err=True)
    if report.rejected > MAX_ERRORS_SHOWN:
        click.echo(f"... and {report.rejected - MAX_ERRORS_SHOWN} more rejected lines", err=True)
    click.echo(f"inserted {report.inserted}, updated {report.updated}, rejected {report.rejected}")
    if report.rejected:
        raise SystemExit(1)  # the other lines are imported; a script sees that some were not


@content_cli.command("render")
@click.option("--progress/--no-progress", default=True, show_default=True)
def render_command(progress: bool) -> None:
    """Render every item's served JSON and engagement rates: upgrades a catalog written before them."""
    with catalog.connect() as conn:
        total = content_count(conn)
    bar = tqdm(total=total, unit="items", desc="rendering", disable=not progress)
    started = time.perf_counter()
    try:
        with catalog.engine.begin() as conn:  # one transaction: readers see all old or all new items
            # A new catalog state first: every item is stamped with it (item snapshots start over).
            rendered = render_items(conn, version=bump_version(conn), progress=bar.update)
    finally:
        bar.close()
    click.echo(f"rendered {rendered} items in {time.perf_counter() - started:.1f} s")


@content_cli.command("snapshot")
def snapshot_command() -> None:
    """Write the item snapshot of the catalog's current state now (pages otherwise write it in the
    background on first need)."""
    snapshots = catalog.snapshots
    if snapshots is None:
        raise click.ClickException("item snapshots are off (ITEM_SNAPSHOT_DIR is empty or the catalog is in memory)")
    with catalog.connect():
        pass  # creates the schema if start-up could not reach the database
    started = time.perf_counter()
    try:
        update = snapshots.write_now()
    except CatalogChanged as error:
        raise click.ClickException(f"{error}; run the command again") from None
    except OSError as error:  # the directory cannot be made or written, the disk is full
        raise click.ClickException(f"cannot write the item snapshot in {snapshots.directory} "
                                   f"({error.strerror or type(error).__name__}); see VIRALSPOT_ITEM_SNAPSHOT_DIR") from None
    if update is None:
        raise click.ClickException(f"another process is writing a snapshot in {snapshots.directory}; "
                                   "it will be used when done")
    done = {"kept": "already current", "appended": f"appended {update.items} items ({update.bytes} bytes)",
            "written": f"written whole: {update.items} items"}[update.action]
    click.echo(f"item snapshot {update.path} ({update.path.stat().st_size} bytes), {done}, ready in "
               f"{time.perf_counter() - started:.1f} s")


@content_cli.command("stats")
def stats_command() -> None:
    """Counts of content by type and primary category."""
    with catalog.connect() as conn:
        rows = counts_by_type_and_category(conn)
        version, _largest = catalog_state(conn)
    click.echo(f"catalog version {version}, {sum(count for _type, _category, count in rows)} items")
    for content_type, group in itertools.groupby(rows, key=lambda row: row[0]):  # rows come ordered by type
        group = list(group)
        click.echo(f"{content_type}: {sum(count for _type, _category, count in group)}")
        for _type, category, count in group:
            click.echo(f"  {category or '(none)'}: {count}")
