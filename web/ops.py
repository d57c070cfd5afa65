"""Operational endpoints: health, readiness, metrics (filled in later)."""

from flask import Flask


def init_app(app: Flask) -> None:
    return None
