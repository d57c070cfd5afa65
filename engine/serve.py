"""Run the web console under gunicorn from the CLI.

The engine never imports the web layer: gunicorn is handed the console's
application factory by name and imports it in each worker process.
"""

from __future__ import annotations

from gunicorn.app.base import BaseApplication
from gunicorn.util import import_app

APP_URI = "web:create_app()"


class _Server(BaseApplication):
    def __init__(self, options: dict):
        self.options = options
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        return import_app(APP_URI)


def serve(*, host: str, port: int, workers: int) -> None:
    _Server(
        {
            "bind": f"{host}:{port}",
            "workers": workers,
            "threads": 4,
            "accesslog": "-",
            "timeout": 60,
        }
    ).run()
