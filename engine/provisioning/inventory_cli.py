"""Command-line commands for demo data, users and the token inventory.

The lead wires these into ``provisioning`` (engine/cli.py): ``demo``, the
``users`` group and the ``tokens`` group. Without ``--user`` a command acts
as the operator at the console (the system actor, not limited by scope);
with it, the named user's roles and scope apply.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..clikit import Context, handle_errors, pass_context
from ..identity import ROLES, SYSTEM, SYSTEM_ACTOR, Actor, actor_for
from . import directory, inventory
from .demo import DEMO_PASSWORD, load_demo_data
from .inventory_models import TokenState


def _actor(session, user: str | None) -> Actor:
    return SYSTEM_ACTOR if not user else actor_for(session, user)


@click.command("demo")
@pass_context
@handle_errors
def demo(context: Context) -> None:
    """Load the demo organisation (safe to run again)."""
    with context.db.write() as session:
        summary = load_demo_data(session, context.settings)
    click.echo(
        f"Demo data loaded: {summary.domains} domains, {summary.users} users and "
        f"{summary.tokens} tokens added. Every demo user's password is "
        f"'{DEMO_PASSWORD}'."
    )


@click.group("users")
def users() -> None:
    """Manage users, role grants and security domains."""


@users.command("create")
@click.argument("username")
@click.option("--name", "display_name", required=True, help="Full name.")
@click.option("--email", required=True, help="E-mail address.")
@click.option("--domain", "domain_path", required=True, help="Security domain path.")
@click.option(
    "--password",
    default=None,
    help="Initial password (prompted for if --ask-password is given).",
)
@click.option("--ask-password", is_flag=True, help="Prompt for the password.")
@click.option(
    "--role",
    "roles",
    multiple=True,
    type=click.Choice(ROLES),
    help="A role granted in the user's domain; repeat for several.",
)
@pass_context
@handle_errors
def users_create(
    context: Context,
    username: str,
    display_name: str,
    email: str,
    domain_path: str,
    password: str | None,
    ask_password: bool,
    roles: tuple[str, ...],
) -> None:
    """Create user USERNAME."""
    if ask_password:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    with context.db.write() as session:
        user = directory.create_user(
            session,
            username=username,
            display_name=display_name,
            email=email,
            domain_path=domain_path,
            password=password,
            roles=roles,
            actor=SYSTEM,
        )
        click.echo(f"Created user {user.username} in {domain_path}.")


@users.command("grant")
@click.argument("username")
@click.argument("role", type=click.Choice(ROLES))
@click.argument("domain_path")
@pass_context
@handle_errors
def users_grant(context: Context, username: str, role: str, domain_path: str) -> None:
    """Grant ROLE to USERNAME within DOMAIN_PATH and its sub-domains."""
    with context.db.write() as session:
        directory.grant_role(session, username, role, domain_path, actor=SYSTEM)
    click.echo(f"{username} is {role} in {domain_path}.")


@users.command("list")
@click.option("--domain", "domain_path", default=None, help="Only this domain.")
@click.option("--user", default=None, help="List as this user (scope applies).")
@pass_context
@handle_errors
def users_list(context: Context, domain_path: str | None, user: str | None) -> None:
    """List users with their domain and roles."""
    with context.db.read() as session:
        rows = directory.list_users(
            session, _actor(session, user), domain_path=domain_path, limit=1000
        )
        if not rows:
            click.echo("No users; run `provisioning demo` or `users create`.")
        for row in rows:
            grants = ", ".join(f"{g.role}@{g.domain.path}" for g in row.grants)
            status = "" if row.is_active else " (inactive)"
            click.echo(
                f"{row.username:16} {row.display_name:24} {row.domain.path:20} "
                f"{grants or '-'}{status}"
            )


@users.command("domains")
@pass_context
@handle_errors
def users_domains(context: Context) -> None:
    """List the security domains."""
    with context.db.read() as session:
        for domain in directory.list_domains(session):
            click.echo(f"{domain.path:30} {domain.name}")


@click.group("tokens")
def tokens() -> None:
    """Keep the token inventory."""


@tokens.command("import")
@click.argument(
    "csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--domain", "domain_path", required=True, help="Inventory security domain."
)
@click.option(
    "--skip-bad-rows", is_flag=True, help="Import the valid lines, report the others."
)
@click.option("--user", default=None, help="Import as this token administrator.")
@pass_context
@handle_errors
def tokens_import(
    context: Context,
    csv_file: Path,
    domain_path: str,
    skip_bad_rows: bool,
    user: str | None,
) -> None:
    """Import hardware tokens from CSV_FILE (header serial,model,expiry)."""
    data = csv_file.read_bytes()
    with context.db.write() as session:
        report = inventory.import_tokens_csv(
            session,
            _actor(session, user),
            data,
            domain_path=domain_path,
            skip_bad_rows=skip_bad_rows,
        )
    for row in report.errors:
        click.echo(f"skipped {row}", err=True)
    skipped = len(report.errors)
    click.echo(
        f"Imported {_count(report.imported, 'token')} into {domain_path}"
        + (f"; skipped {_count(skipped, 'bad line')}." if skipped else ".")
    )


def _count(number: int, noun: str) -> str:
    """Return "1 token", "2 tokens"."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


@tokens.command("list")
@click.option("--state", type=click.Choice(TokenState.ALL), default=None)
@click.option("--model", "model_code", default=None, help="Token model code.")
@click.option("--owner", default=None, help="Only tokens of this user.")
@click.option("--domain", "domain_path", default=None, help="Only this inventory.")
@click.option("--user", default=None, help="List as this user (scope applies).")
@click.option("--limit", default=200, show_default=True)
@pass_context
@handle_errors
def tokens_list(
    context: Context,
    state: str | None,
    model_code: str | None,
    owner: str | None,
    domain_path: str | None,
    user: str | None,
    limit: int,
) -> None:
    """List tokens of the inventory."""
    with context.db.read() as session:
        rows = inventory.list_tokens(
            session,
            _actor(session, user),
            state=state,
            model_code=model_code,
            owner=owner,
            domain_path=domain_path,
            limit=limit,
        )
        if not rows:
            click.echo("No tokens match.")
        for token in rows:
            expiry = f"{token.expires_on:%Y-%m-%d}" if token.expires_on else "-"
            click.echo(
                f"{token.serial:14} {token.model.code:10} {token.state:10} "
                f"{token.owner or '-':14} {token.domain_path:20} expires {expiry}"
            )


@tokens.command("disable")
@click.argument("serial")
@click.option("--reason", default="", help="Why, for the token history.")
@click.option("--user", default=None, help="Disable as this token administrator.")
@pass_context
@handle_errors
def tokens_disable(
    context: Context, serial: str, reason: str, user: str | None
) -> None:
    """Disable token SERIAL."""
    with context.db.write() as session:
        inventory.disable_token(session, _actor(session, user), serial, reason=reason)
    click.echo(f"Token {serial} is disabled.")


COMMANDS = (demo, users, tokens)
