"""Pages of the web console (filled in by the web console work)."""

from flask import Flask


def init_app(app: Flask) -> None:
    @app.get("/")
    def index():
        return "Token provisioning console"
