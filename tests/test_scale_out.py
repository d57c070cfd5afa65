"""The scale-out proof at a small size: 2 servers, 2 workers, one PostgreSQL.

Runs scripts/scale_out.py's scenario on a database of its own on
127.0.0.1:5432 (dropped afterwards): six users drive ten requests through
approval and distribution over HTTP while approvers and distributors race for
the same tasks; then every request must be final and consistent, no task
completed twice, no completion lost, every mail sent and received once.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from conftest import POSTGRES_URL

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "scale_out.py"


def load_script():
    spec = importlib.util.spec_from_file_location("scale_out", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    # Dataclasses look their module up in sys.modules while being defined.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.postgres
def test_two_servers_and_two_workers_keep_every_request_consistent(request):
    if request.config.getoption("--no-postgres"):
        pytest.skip("PostgreSQL tests disabled with --no-postgres")
    scale_out = load_script()

    report = scale_out.run_scale_out(
        servers=2,
        workers=2,
        users=6,
        requests=10,
        admin_url=POSTGRES_URL,
        timeout=300,
    )

    assert report["problems"] == [] and report["client_errors"] == [], report
    assert report["ok"]
    assert sum(report["statuses"].values()) == report["requests"] == 10
    assert report["completions_answered_200"] > 0
    assert report["mails_in_outbox"] > 0
    assert report["mails_received"] == report["mails_in_outbox"]
