"""``flask`` commands: ``flask sessions ...`` (and ``flask content ...`` from the catalog)."""
from __future__ import annotations

import json

import click
from flask import Flask
from flask.cli import AppGroup
from marshmallow import ValidationError

from .catalog.commands import content_cli
from .extensions import session_store
from .schemas.session_id import validate_session_id
from .store import SessionStoreBackend
from .session.inspection import session_document

sessions_cli = AppGroup("sessions", help="Inspect and reset random-feed sessions.")


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
    """One session's served count and feeds, as JSON."""
    summary = _store().summary(session_id)
    if summary is None:
        raise click.ClickException(f"no session {session_id} (unknown, expired or reset)")
    click.echo(json.dumps(session_document(summary), indent=2))


@sessions_cli.command("reset")
@click.argument("session_id", callback=_session_id)
def reset_session_command(session_id: str) -> None:
    """Reset a session, as POST /api/reset-session does."""
    from .session.reset import reset_session

    _data, message = reset_session(_store(), session_id)
    click.echo(message)


def register(app: Flask) -> None:
    app.cli.add_command(sessions_cli)
    app.cli.add_command(content_cli)
