"""``flask openapi write FILE``: the description, as served at /api/openapi.json, to a file."""
from __future__ import annotations

import json

import click
from flask import current_app
from flask.cli import AppGroup

from .spec import build_spec, undocumented_routes

openapi_cli = AppGroup("openapi", help="The API's OpenAPI description.")


@openapi_cli.command("write")
@click.argument("path", type=click.Path(dir_okay=False, writable=True, allow_dash=True))
def write_spec(path: str) -> None:
    """Write the OpenAPI description to PATH ("-": standard output). Fails if a route is undocumented."""
    missing = undocumented_routes(current_app)
    if missing:
        raise click.ClickException("routes without an @documented declaration: " + "; ".join(missing))
    spec = build_spec(current_app)
    text = json.dumps(spec, indent=2, ensure_ascii=False) + "\n"
    if path == "-":
        click.echo(text, nl=False)
        return
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    operations = sum(1 for item in spec["paths"].values() for method in item if method in _METHODS)
    click.echo(f"wrote {path}: OpenAPI {spec['openapi']}, {len(spec['paths'])} paths, {operations} operations")


_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
