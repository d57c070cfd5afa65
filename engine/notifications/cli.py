"""The ``provisioning mail`` commands: test the SMTP server, inspect the outbox.

The lead wires the ``mail`` group into ``provisioning`` (engine/cli.py).
"""

from __future__ import annotations

import click

from engine.clikit import Context, handle_errors, pass_context
from engine.mail import test_connection

from .listener import configure
from .models import OutboxStatus
from .outbox import deliver_pending, list_outbox, outbox_counts, resend
from .smtp import clear_smtp_settings, current_smtp_settings, describe_smtp_settings


@click.group("mail")
def mail() -> None:
    """E-mail: SMTP settings, a test message, and the outbox."""


@mail.command("settings")
@pass_context
@handle_errors
def show_settings(context: Context) -> None:
    """Show the SMTP settings in force (never the password)."""
    with context.db.read() as session:
        view = describe_smtp_settings(session)
    click.echo(f"Source:   {view.source}")
    click.echo(f"Server:   {view.host}:{view.port} ({view.security})")
    click.echo(f"Login:    {view.username or '(none)'}")
    click.echo(f"Password: {'set' if view.has_password else 'not set'}")
    click.echo(f"Sender:   {view.sender}")


@mail.command("forget-settings")
@pass_context
@handle_errors
def forget_settings(context: Context) -> None:
    """Drop the settings saved in the console; the SMTP_* variables apply again."""
    with context.db.write() as session:
        removed = clear_smtp_settings(session, actor="cli")
    click.echo(
        "Stored SMTP settings removed; the SMTP_* variables apply."
        if removed
        else "No SMTP settings were stored; the SMTP_* variables apply."
    )


@mail.command("test")
@click.option("--to", "address", default=None, help="Send a test message here.")
@pass_context
@handle_errors
def test(context: Context, address: str | None) -> None:
    """Connect to the SMTP server (and send a test message); print its answer."""
    with context.db.read() as session:
        smtp = current_smtp_settings(session, context.settings)
    answer = test_connection(smtp, address)
    click.echo(f"{smtp.host}:{smtp.port} answered: {answer}")


# pytest would otherwise collect the command as a test where it is imported.
test.__test__ = False  # type: ignore[attr-defined]


@mail.command("outbox")
@click.option(
    "--status",
    type=click.Choice(OutboxStatus.ALL),
    default=None,
    help="Only messages in this status.",
)
@click.option("--limit", default=50, show_default=True, type=int)
@pass_context
@handle_errors
def show_outbox(context: Context, status: str | None, limit: int) -> None:
    """List outbox messages, newest first, with the server's last answer."""
    # Rows are read inside the transaction: the read session expires them.
    with context.db.read() as session:
        counts = outbox_counts(session)
        click.echo(", ".join(f"{name}: {count}" for name, count in counts.items()))
        for row in list_outbox(session, status=status, limit=limit):
            click.echo(
                f"{row.id}  {row.status:<8} {row.attempts}x  {row.event:<20} "
                f"{row.recipient}  {row.business_key}"
            )
            if row.status != OutboxStatus.SENT and row.last_error:
                click.echo(f"    {row.last_error}")


@mail.command("resend")
@click.argument("outbox_id")
@click.option("--to", "address", default=None, help="Send to this address instead.")
@pass_context
@handle_errors
def resend_command(context: Context, outbox_id: str, address: str | None) -> None:
    """Queue a failed message again (the worker sends it)."""
    with context.db.write() as session:
        message = resend(session, outbox_id, actor="cli", address=address)
        recipient = message.recipient
    click.echo(f"E-mail {outbox_id} to {recipient} queued again.")


@mail.command("deliver")
@pass_context
@handle_errors
def deliver(context: Context) -> None:
    """Send every due message now, without running the worker."""
    configure(context.settings)
    handled = deliver_pending(context.db, context.settings)
    click.echo(f"Handled {handled} message(s).")
