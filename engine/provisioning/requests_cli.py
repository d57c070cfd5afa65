"""``provisioning requests ...``: submit, follow and work requests from the shell.

The group :data:`requests_group` is added to the main command line by
:mod:`engine.cli`. Errors a person can cause print one line and exit with
status 1, like the other commands.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from tqdm import tqdm

from ..clikit import handle_errors
from ..config import Settings
from ..db import Database
from ..identity import actor_for
from . import bulk, requests


@contextmanager
def _open() -> Iterator[tuple[Settings, Database]]:
    """Yield the settings and a database that is closed afterwards."""
    settings = Settings.from_env()
    database = Database.from_settings(settings)
    try:
        yield settings, database
    finally:
        database.dispose()


@click.group("requests")
def requests_group() -> None:
    """Submit, follow and work provisioning requests."""


@requests_group.command("submit")
@click.argument("request_type", type=click.Choice(list(requests.REQUEST_TYPES)))
@click.option("--user", required=True, help="Who submits the request.")
@click.option(
    "--for", "on_behalf_of", default=None, help="Submit for this user (administrators)."
)
@click.option(
    "--field",
    "fields",
    multiple=True,
    metavar="NAME=VALUE",
    help="A field of the request form; repeat for each field.",
)
@handle_errors
def submit(
    request_type: str, user: str, on_behalf_of: str | None, fields: tuple[str, ...]
) -> None:
    """Submit a request of REQUEST_TYPE with its form fields."""
    form = {}
    for item in fields:
        name, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(
                f"'{item}' is not NAME=VALUE.", param_hint="--field"
            )
        form[name.strip()] = value
    with _open() as (settings, database):
        with database.write() as session:
            request = requests.submit_request(
                session,
                actor=actor_for(session, user),
                request_type=request_type,
                form=form,
                settings=settings,
                on_behalf_of=on_behalf_of,
            )
            click.echo(
                f"Request {request.id} submitted: {request.status}, "
                f"{request.current_step or 'no open step'}."
            )


@requests_group.command("list")
@click.option("--user", required=True, help="Whose view of the requests.")
@click.option("--scope", is_flag=True, help="Requests in your scope, not your own.")
@click.option("--status", type=click.Choice(requests.RequestStatus.ALL), default=None)
@handle_errors
def list_command(user: str, scope: bool, status: str | None) -> None:
    """List requests, newest first."""
    with _open() as (_, database):
        with database.read() as session:
            rows = requests.list_requests(
                session,
                actor_for(session, user),
                mine=not scope,
                status=status,
                limit=500,
            )
            for r in rows:
                click.echo(
                    f"{r.id:>6}  {r.created_at:%Y-%m-%d}  {r.request_type:24} "
                    f"{r.requester:15} {r.status:10} {r.current_step}"
                )


@requests_group.command("show")
@click.argument("request_id", type=int)
@click.option("--user", required=True, help="Whose view of the request.")
@handle_errors
def show(request_id: int, user: str) -> None:
    """Show a request: status, who holds it now and its timeline."""
    with _open() as (_, database):
        with database.read() as session:
            view = requests.get_request(session, actor_for(session, user), request_id)
            r = view.request
            click.echo(
                f"Request {r.id}: {requests.REQUEST_TYPES[r.request_type].label}"
            )
            click.echo(f"Requester: {r.requester} ({r.domain_path})")
            click.echo(f"Status:    {r.status}")
            if view.current_step:
                click.echo(f"Step:      {view.current_step}")
            for holder in view.holders:
                people = ", ".join(holder.people) or "nobody"
                click.echo(f"Held by:   {holder.text}: {people}")
            if r.comment_to_user:
                click.echo(f"Comment:   {r.comment_to_user}")
            if r.outcome:
                click.echo(f"Outcome:   {r.outcome}")
            click.echo("Timeline:")
            for entry in view.timeline:
                click.echo(f"  {entry.at:%Y-%m-%d %H:%M}  {entry.text}")
                if entry.comment:
                    click.echo(f"      comment: {entry.comment}")
                if entry.note:
                    click.echo(f"      note (staff only): {entry.note}")


@requests_group.command("decide")
@click.argument("task_id")
@click.argument("decision", type=click.Choice(requests.DECISIONS))
@click.option("--user", required=True, help="The approver.")
@click.option("--comment", default="", help="Comment to the requester.")
@click.option("--note", default="", help="Internal note, for staff only.")
@click.option("--token-model", default=None, help="Another model of the same class.")
@handle_errors
def decide(
    task_id: str,
    decision: str,
    user: str,
    comment: str,
    note: str,
    token_model: str | None,
) -> None:
    """Approve, reject, cancel or defer the approval step TASK_ID."""
    with _open() as (settings, database):
        with database.write() as session:
            request = requests.decide(
                session,
                actor_for(session, user),
                task_id,
                decision=decision,
                comment=comment,
                note=note,
                token_model=token_model,
                settings=settings,
            )
            click.echo(
                f"Request {request.id}: {request.status}, {request.current_step}"
            )


@requests_group.command("cancel")
@click.argument("request_id", type=int)
@click.option("--user", required=True, help="The requester or an administrator.")
@click.option("--reason", default="", help="Why the request is cancelled.")
@handle_errors
def cancel(request_id: int, user: str, reason: str) -> None:
    """Cancel a pending request."""
    with _open() as (_, database):
        with database.write() as session:
            requests.cancel_request(
                session, actor_for(session, user), request_id, reason
            )
        click.echo(f"Request {request_id} cancelled.")


@requests_group.command("bulk")
@click.argument(
    "csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--user", required=True, help="The administrator submitting the file.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@handle_errors
def bulk_command(csv_file: Path, user: str, as_json: bool) -> None:
    """Submit one new token request per line of CSV_FILE.

    The header is username,domain,token_type, optionally followed by
    token_model and shipping_address. Exits with status 1 if any line was
    refused; the others are submitted all the same.
    """
    with _open() as (settings, database):
        lines = bulk.read_csv(
            csv_file.read_bytes(), max_bytes=settings.max_upload_bytes
        )
        with database.read() as session:
            actor = actor_for(session, user)
        with tqdm(total=len(lines), unit="request", file=sys.stderr) as bar:
            report = bulk.submit_lines(
                database, actor, lines, settings, on_row=lambda _row: bar.update(1)
            )

        if as_json:
            click.echo(
                json.dumps(
                    [
                        {
                            "line": r.line,
                            "username": r.username,
                            "ok": r.ok,
                            "message": r.message,
                            "request_id": r.request_id,
                        }
                        for r in report.rows
                    ],
                    indent=2,
                )
            )
        else:
            click.echo(str(report))
        if report.failed:
            sys.exit(1)
