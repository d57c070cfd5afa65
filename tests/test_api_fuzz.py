"""Fuzz /api/v1 with schemathesis: no generated call may cause a server error.

Schemathesis reads the OpenAPI document and generates parameters and bodies
for every operation; each call goes in-process through the WSGI app, as an
administrator with a bearer token (so that calls reach the views instead of
stopping at 401). Each answer must be below 500, and every error must keep
the one error shape. (Schemathesis' own pytest plugin is not used: it does
not run under pytest 9 yet; Hypothesis drives the operations' strategies.)
"""

from __future__ import annotations

import pytest
import schemathesis
from helpers_api import make_api
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config import Settings
from web.api.openapi import openapi_document

OPERATIONS = [
    pytest.param(method.upper(), path, id=f"{method.upper()} {path}")
    for path, item in openapi_document()["paths"].items()
    for method in item
]


@pytest.fixture
def fuzz_target(sqlite_database, tmp_path):
    app_settings = Settings(
        database_url=sqlite_database.url.render_as_string(hide_password=False),
        instance_path=tmp_path / "instance",
        secret_key="fuzz-secret-key",
        token_encryption_key="fuzz-token-encryption-key",
    )
    api = make_api(sqlite_database, app_settings)
    api.org.new_hardware("jdoe")
    headers = api.headers("admin")
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", api.app)
    return schema, headers


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_generated_calls_cause_no_server_error(fuzz_target, method, path):
    schema, headers = fuzz_target
    operation = schema[path][method]

    @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data):
        case = data.draw(operation.as_strategy())
        response = case.call(headers=headers)

        assert response.status_code < 500, response.text
        if response.status_code >= 400:
            body = response.json()
            assert set(body) == {"error"}, body
            assert set(body["error"]) == {"code", "message", "fields"}, body

    run()
