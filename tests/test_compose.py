"""docker-compose.yml is valid and wires the services as the README says.

No Docker engine runs in CI, so the file is checked with Compose's own
``config`` command (``docker compose`` or Debian's ``docker-compose``), which
parses, validates and resolves it; the images are neither built nor run.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True
        )
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


@pytest.fixture(scope="module")
def config() -> dict:
    command = _compose_command()
    if command is None:
        pytest.skip(
            "Neither 'docker compose' nor 'docker-compose' is installed; install "
            "Debian's docker-compose (apt-get install docker-compose) to check "
            "docker-compose.yml."
        )
    result = subprocess.run(
        [*command, "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin"},
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_has_database_web_worker_and_mail_catcher(config):
    assert set(config["services"]) == {"db", "web", "worker", "mail"}
    assert config["services"]["db"]["image"].startswith("postgres:")
    assert "mailpit" in config["services"]["mail"]["image"]


def test_web_runs_migrations_before_gunicorn(config):
    command = " ".join(config["services"]["web"]["command"])

    assert command.index("provisioning db upgrade") < command.index(
        "provisioning --log-format json serve"
    )


def test_services_are_configured_by_environment(config):
    for name in ("web", "worker"):
        environment = config["services"][name]["environment"]
        assert environment["DATABASE_URL"].startswith(
            "postgresql+psycopg://provisioning:"
        )
        assert "@db:5432/provisioning" in environment["DATABASE_URL"]
        assert environment["SMTP_HOST"] == "mail"
        assert environment["LOG_FORMAT"] == "json"


def test_worker_starts_after_web_is_ready(config):
    worker = config["services"]["worker"]

    assert worker["command"][-1] == "worker"
    assert worker["depends_on"]["web"]["condition"] == "service_healthy"
    assert "/readyz" in " ".join(config["services"]["web"]["healthcheck"]["test"])


def test_dockerfile_builds_what_compose_runs():
    dockerfile = (ROOT / "Dockerfile").read_text()
    ignored = (ROOT / ".dockerignore").read_text().split()

    assert "COPY --from=frontend" in dockerfile
    assert "provisioning db upgrade" in dockerfile
    assert ".venv" in ignored and "instance" in ignored
