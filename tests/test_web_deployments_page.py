"""The deployments page: what 'Validate only' shows and stores."""

from __future__ import annotations

import io

from helpers_web import (
    BPMN_DIR,
    csrf_token,
    sign_in,
)
from sqlalchemy import func, select

from engine.models import Deployment, ProcessDefinition


def admin_client(env):
    client = env.app.test_client()
    sign_in(client, env.database, "admin")
    return client


def upload(client, files, action):
    data = {
        "csrf_token": csrf_token(client, "/admin/deployments"),
        "action": action,
        "files": [(io.BytesIO(content), name) for name, content in files],
    }
    return client.post(
        "/admin/deployments", data=data, content_type="multipart/form-data"
    )


def overview(response) -> str:
    """Return the page below the upload form: definitions, decisions, deployments."""
    page = response.get_data(as_text=True)
    return page[page.index('id="defs-title"') :]


def changed_group_membership() -> bytes:
    content = (BPMN_DIR / "group_membership.bpmn").read_bytes()
    return content.replace(b'name="Approve request"', b'name="Approve membership"')


def test_validate_only_page_shows_no_version_or_deployment_it_did_not_store(env):
    client = admin_client(env)
    before = overview(client.get("/admin/deployments"))

    validated = upload(
        client, [("group_membership.bpmn", changed_group_membership())], "validate"
    )

    assert validated.status_code == 200
    assert "Valid: ready to deploy" in validated.get_data(as_text=True)
    assert "would become version 2" in validated.get_data(as_text=True)
    assert overview(validated) == before
    with env.database.read() as session:
        assert (
            session.scalar(
                select(func.count())
                .select_from(ProcessDefinition)
                .where(ProcessDefinition.key == "group_membership")
            )
            == 1
        )
        last = session.scalar(select(func.max(Deployment.id)))
    assert client.get(f"/admin/deployments/{last + 1}").status_code == 404


def test_deploy_after_validate_only_lists_the_new_version(env):
    client = admin_client(env)
    files = [("group_membership.bpmn", changed_group_membership())]
    upload(client, files, "validate")

    deployed = upload(client, files, "deploy")

    assert deployed.status_code == 200
    assert "is now version 2" in deployed.get_data(as_text=True)
    assert ">v2</a>" in overview(deployed)
