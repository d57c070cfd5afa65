"""The REST API under /api/v1 and the Camunda REST subset (filled in later)."""

from flask import Flask


def init_app(app: Flask) -> None:
    return None
