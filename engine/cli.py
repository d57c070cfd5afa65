"""The ``provisioning`` command line.

Every command goes through the same engine functions as the web console.
Errors a person can cause print one line and exit with status 1; no traceback.
"""

from __future__ import annotations

import getpass
import json
import logging
import socket
import sys

import click

from . import api_tokens, deployments, instances, migrate
from .clikit import Context, handle_errors, pass_context
from .errors import ProvisioningError, ValidationFailed
from .identity import actor_for
from .logs import configure_logging
from .notifications.cli import mail
from .provisioning.inventory_cli import demo, tokens, users
from .provisioning.requests_cli import requests_group

logger = logging.getLogger(__name__)


@click.group()
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=None,
    help="Log as plain text or as JSON lines (default: LOG_FORMAT or text).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
@click.pass_context
def main(ctx: click.Context, log_format: str | None, verbose: bool) -> None:
    """Run and administer the token provisioning workflows."""
    configure_logging(log_format, logging.DEBUG if verbose else None)
    # Every command needs the product's service topics and listeners: deploy
    # refuses a topic without a handler, and start/complete run handlers.
    _load_product()
    try:
        ctx.ensure_object(Context)
    except ProvisioningError as err:
        # A bad setting in the environment: one line, as for any other error.
        click.echo(f"Error: {err}", err=True)
        sys.exit(1)
    # Close pooled connections when the command ends, not when Python exits.
    ctx.call_on_close(ctx.obj.close)


for command in (demo, users, tokens, requests_group, mail, api_tokens.cli):
    main.add_command(command)


@main.group()
def db() -> None:
    """Manage the database schema."""


@db.command("upgrade")
@pass_context
@handle_errors
def db_upgrade(context: Context) -> None:
    """Create or upgrade the schema to the latest migration."""
    migrate.upgrade(context.db)
    click.echo(f"Database is up to date ({context.db.url.render_as_string()}).")


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--user", default=None, help="Who deploys (default: the OS user).")
@click.option("--name", default=None, help="A name for the deployment.")
@pass_context
@handle_errors
def deploy(
    context: Context, paths: tuple[str, ...], user: str | None, name: str | None
):
    """Deploy .bpmn and .dmn files, or folders of them, as new versions."""
    files = deployments.read_paths(paths)
    with context.db.write() as session:
        result = deployments.deploy(
            session,
            files,
            deployed_by=user or getpass.getuser(),
            source=f"cli on {socket.gethostname()}",
            name=name,
            max_bytes=context.settings.max_upload_bytes,
        )
    for item in result.items:
        click.echo(
            f"{item.kind:9} {item.key:30} version {item.version:<4} {item.status}"
        )
    if result.changed:
        click.echo(f"Deployment {result.deployment_id} stored.")
    else:
        click.echo("Nothing changed; no deployment stored.")


@main.command()
@pass_context
@handle_errors
def definitions(context: Context) -> None:
    """List deployed process definitions and their versions."""
    with context.db.read() as session:
        rows = deployments.list_definitions(session)
        if not rows:
            click.echo("No process is deployed; run `provisioning deploy bpmn/`.")
        for d in rows:
            click.echo(
                f"{d.key:30} version {d.version:<4} {d.name:40} "
                f"deployed {d.created_at:%Y-%m-%d %H:%M} by {d.deployment.deployed_by}"
            )


def _json_object(value: str | None, option: str) -> dict:
    if not value:
        return {}
    # A ProvisioningError, not click.BadParameter: a usage error would exit
    # with status 2 and print the usage text instead of one line.
    try:
        data = json.loads(value)
    except json.JSONDecodeError as err:
        raise ValidationFailed(
            f"{option} is not valid JSON ({err.msg} at column {err.colno}); "
            'give a JSON object such as {"name": "value"}.'
        ) from None
    if not isinstance(data, dict):
        raise ValidationFailed(
            f'{option} must be a JSON object such as {{"name": "value"}}.'
        )
    return data


@main.command()
@click.argument("key")
@click.option("--user", required=True, help="Who starts the instance.")
@click.option("--business-key", default=None, help="An external reference.")
@click.option("--variables", default=None, help="Start variables as a JSON object.")
@pass_context
@handle_errors
def start(
    context: Context,
    key: str,
    user: str,
    business_key: str | None,
    variables: str | None,
) -> None:
    """Start the latest version of process KEY."""
    data = _json_object(variables, "--variables")
    with context.db.write() as session:
        actor = actor_for(session, user)
        instance = instances.start_instance(
            session,
            key,
            actor=actor,
            business_key=business_key,
            variables=data,
            settings=context.settings,
        )
        click.echo(
            f"Started instance {instance.id} of {key} "
            f"version {instance.definition.version}: {instance.status}"
        )


@main.command()
@click.option("--user", required=True, help="Whose tasks to list.")
@pass_context
@handle_errors
def tasks(context: Context, user: str) -> None:
    """List the open tasks a user may work."""
    with context.db.read() as session:
        actor = actor_for(session, user)
        rows = instances.list_tasks(session, actor, limit=500)
        if not rows:
            click.echo(f"No open task for {user}.")
        for t in rows:
            queue = ", ".join(t.candidate_groups + t.candidate_users) or "-"
            click.echo(
                f"{t.id}  instance {t.instance_id:<6} {t.name:30} "
                f"queue {queue:20} assignee {t.assignee or '-'}"
            )


@main.command()
@click.argument("task_id")
@click.option("--user", required=True, help="Who completes the task.")
@click.option("--data", default=None, help="Form values as a JSON object.")
@pass_context
@handle_errors
def complete(context: Context, task_id: str, user: str, data: str | None) -> None:
    """Complete TASK_ID with form data."""
    values = _json_object(data, "--data")
    with context.db.write() as session:
        actor = actor_for(session, user)
        instance = instances.complete_task(
            session, task_id, actor=actor, data=values, settings=context.settings
        )
        click.echo(
            f"Completed task {task_id}; instance {instance.id} is {instance.status}."
        )


@main.command()
@click.argument("instance_id", type=int)
@pass_context
@handle_errors
def show(context: Context, instance_id: int) -> None:
    """Show an instance: state, open tasks, incidents and history."""
    with context.db.read() as session:
        view = instances.describe_instance(session, instance_id)
        i = view.instance
        click.echo(
            f"Instance {i.id}: {i.process_key} version {view.definition.version}, "
            f"{i.status}" + (f" at {i.end_event}" if i.end_event else "")
        )
        click.echo(
            f"  started by {i.initiator} at {i.created_at:%Y-%m-%d %H:%M:%S}, "
            f"domain {i.domain_path or '-'}, business key {i.business_key or '-'}"
        )
        click.echo("Open tasks:" if view.open_tasks else "Open tasks: none")
        for t in view.open_tasks:
            click.echo(
                f"  {t.id}  {t.name}  queue "
                f"{', '.join(t.candidate_groups + t.candidate_users) or '-'}"
                f"  assignee {t.assignee or '-'}"
            )
        open_incidents = [x for x in view.incidents if x.status == "open"]
        if open_incidents:
            click.echo("Incidents:")
            for x in open_incidents:
                click.echo(f"  {x.element_id}: {x.message} (attempt {x.attempts})")
        click.echo("History:")
        for h in view.history:
            click.echo(
                f"  {h.at:%Y-%m-%d %H:%M:%S}  {h.actor:15} {h.action:18} {h.message}"
            )


@main.command()
@click.argument("instance_id", type=int)
@click.option("--user", required=True)
@click.option("--reason", required=True)
@pass_context
@handle_errors
def cancel(context: Context, instance_id: int, user: str, reason: str) -> None:
    """Cancel a running instance."""
    with context.db.write() as session:
        actor = actor_for(session, user)
        instances.cancel_instance(session, instance_id, actor=actor, reason=reason)
    click.echo(f"Cancelled instance {instance_id}.")


@main.command()
@click.argument("instance_id", type=int)
@click.option("--user", required=True)
@pass_context
@handle_errors
def retry(context: Context, instance_id: int, user: str) -> None:
    """Retry the failed step of an instance in incident."""
    with context.db.write() as session:
        actor = actor_for(session, user)
        instance = instances.retry_incident(
            session, instance_id, actor=actor, settings=context.settings
        )
    click.echo(f"Retried instance {instance_id}: {instance.status}.")


@main.command()
@click.option(
    "--interval",
    default=2.0,
    show_default=True,
    help="Seconds to sleep when there is nothing to do.",
)
@click.option("--once", is_flag=True, help="Do one pass and exit.")
@pass_context
@handle_errors
def worker(context: Context, interval: float, once: bool) -> None:
    """Fire due timers and run background jobs until stopped (SIGTERM)."""
    from .worker import Worker, run_once

    _load_product()
    if once:
        handled = run_once(context.db, context.settings)
        click.echo(f"Handled {handled} item(s).")
        return
    Worker(context.db, context.settings, interval=interval).run()


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int)
@pass_context
@handle_errors
def serve(context: Context, host: str, port: int, workers: int) -> None:
    """Serve the web console with gunicorn."""
    from .serve import serve as run_server

    run_server(host=host, port=port, workers=workers)


def _load_product() -> None:
    """Import the modules that register service handlers, listeners and jobs."""
    from . import product  # noqa: F401


if __name__ == "__main__":  # pragma: no cover
    main()
