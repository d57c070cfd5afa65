"""Administration pages for e-mail: SMTP settings, templates, outbox (filled in later)."""

from flask import Flask


def init_app(app: Flask) -> None:
    return None
