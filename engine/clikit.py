"""What every ``provisioning`` command shares: settings, database, error handling.

Command modules of the product import from here, and :mod:`engine.cli`
gathers them all into one command group.
"""

from __future__ import annotations

import functools
import sys

import click
from sqlalchemy.exc import OperationalError, ProgrammingError

from .config import Settings
from .db import Database
from .errors import ProvisioningError


class Context:
    def __init__(self):
        self.settings = Settings.from_env()
        self._db: Database | None = None

    @property
    def db(self) -> Database:
        if self._db is None:
            self._db = Database.from_settings(self.settings)
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.dispose()
            self._db = None


def handle_errors(func):
    """Turn engine errors into a one-line message and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except ProvisioningError as err:
            click.echo(f"Error: {err}", err=True)
            sys.exit(1)
        except (OperationalError, ProgrammingError) as err:
            reason = str(err.orig).splitlines()[0] if err.orig else str(err)
            click.echo(
                f"Error: the database is not ready ({reason}); check DATABASE_URL "
                "and run `provisioning db upgrade`.",
                err=True,
            )
            sys.exit(1)

    return wrapper


pass_context = click.make_pass_decorator(Context, ensure=True)
