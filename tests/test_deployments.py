"""Deployments: files, folders, versions, duplicate filtering, spec storage."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest
from helpers_engine import (
    APPROVER,
    DATA,
    DISTRIBUTOR,
    complete,
    count,
    data_file,
    deploy,
    start,
    task_of,
)
from sqlalchemy import select

from engine import deployments
from engine.errors import DeploymentError, NotFound
from engine.models import (
    DecisionDefinition,
    Deployment,
    DeploymentFile,
    ProcessDefinition,
    ProcessInstance,
    SpecBlob,
)


def approval_variant(old: bytes, new: bytes) -> tuple[str, bytes]:
    """Return approval.bpmn with one text changed, under the same file name."""
    name, content = data_file("approval.bpmn")
    assert old in content
    return name, content.replace(old, new)


def versions(db, key: str) -> list[int]:
    with db.read() as session:
        return list(
            session.scalars(
                select(ProcessDefinition.version)
                .where(ProcessDefinition.key == key)
                .order_by(ProcessDefinition.version)
            )
        )


def test_deploy_one_file_creates_version_1(database):
    result = deploy(database, "approval.bpmn")

    assert result.changed
    assert [(i.kind, i.key, i.version, i.status) for i in result.items] == [
        ("process", "approval", 1, "new")
    ]
    with database.read() as session:
        definition = deployments.latest_definition(session, "approval")
        assert (definition.name, definition.version) == ("Approval", 1)
        assert definition.deployment_id == result.deployment_id
        assert definition.file.filename == "approval.bpmn"


def test_deploy_several_files_in_one_deployment(database):
    result = deploy(
        database, "approval.bpmn", "engine_policy.dmn", "engine_uses_policy.bpmn"
    )

    assert [(i.kind, i.key, i.version, i.status) for i in result.items] == [
        ("process", "approval", 1, "new"),
        ("process", "engine_uses_policy", 1, "new"),
        ("decision", "engine_policy", 1, "new"),
    ]
    assert count(database, Deployment) == 1
    assert count(database, DeploymentFile) == 3


def test_deploy_a_folder_takes_bpmn_and_dmn_files_only(database, tmp_path):
    for name in ("approval.bpmn", "engine_policy.dmn", "engine_uses_policy.bpmn"):
        (tmp_path / name).write_bytes((DATA / name).read_bytes())
    (tmp_path / "README.txt").write_text("not a diagram")

    files = deployments.read_paths([tmp_path])
    result = deploy(database, *files)

    assert [name for name, _ in files] == [
        "approval.bpmn",
        "engine_policy.dmn",
        "engine_uses_policy.bpmn",
    ]
    assert {i.key for i in result.items} == {
        "approval",
        "engine_policy",
        "engine_uses_policy",
    }


def test_read_paths_refuses_a_missing_path(tmp_path):
    with pytest.raises(NotFound) as err:
        deployments.read_paths([tmp_path / "nope.bpmn"])

    assert str(err.value) == (
        f"{tmp_path / 'nope.bpmn'} does not exist; give a .bpmn or .dmn file or a "
        "folder."
    )


def test_read_paths_refuses_a_folder_without_diagrams(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing to deploy")

    with pytest.raises(NotFound) as err:
        deployments.read_paths([tmp_path])

    assert str(err.value) == f"{tmp_path} holds no .bpmn or .dmn file to deploy."


def test_each_change_gives_the_next_version(database):
    deploy(database, "approval.bpmn")
    second = deploy(database, approval_variant(b"First approval", b"Approval 1"))
    third = deploy(database, approval_variant(b"First approval", b"Approval one"))

    assert [(i.key, i.version, i.status) for i in second.items] == [
        ("approval", 2, "new")
    ]
    assert [(i.key, i.version, i.status) for i in third.items] == [
        ("approval", 3, "new")
    ]
    assert versions(database, "approval") == [1, 2, 3]


def test_same_content_creates_no_version_and_no_deployment(database):
    first = deploy(database, "approval.bpmn")
    second = deploy(database, "approval.bpmn")

    assert not second.changed
    assert second.deployment_id is None
    assert [(i.key, i.version, i.status) for i in second.items] == [
        ("approval", 1, "unchanged")
    ]
    assert count(database, Deployment) == 1
    assert count(database, DeploymentFile) == len(
        [f for f in first.items if f.kind == "process"]
    )
    assert versions(database, "approval") == [1]


def test_unchanged_decision_is_reported_unchanged(database):
    deploy(database, "engine_policy.dmn", "engine_uses_policy.bpmn")

    again = deploy(database, "engine_policy.dmn", "engine_uses_policy.bpmn")

    assert [(i.kind, i.key, i.version, i.status) for i in again.items] == [
        ("process", "engine_uses_policy", 1, "unchanged"),
        ("decision", "engine_policy", 1, "unchanged"),
    ]
    assert count(database, Deployment) == 1


def test_running_instance_stays_on_its_version(database):
    deploy(database, "approval.bpmn")
    old = start(database, "approval")
    deploy(database, approval_variant(b'name="Distribute"', b'name="Hand out"'))
    new = start(database, "approval")

    for instance_id in (old, new):
        complete(
            database,
            task_of(database, instance_id, "approve1").id,
            APPROVER,
            {"decision": "approve"},
        )
    assert task_of(database, old, "distribute").name == "Distribute"
    assert task_of(database, new, "distribute").name == "Hand out"

    status = complete(
        database,
        task_of(database, old, "distribute").id,
        DISTRIBUTOR,
        {"serial_number": "SN-1"},
    )
    assert status == "completed"
    with database.read() as session:
        by_id = {
            i.id: (i.definition.version, i.end_event)
            for i in session.scalars(select(ProcessInstance))
        }
    assert by_id == {old: (1, "done"), new: (2, None)}


def test_changed_decision_gives_new_versions_to_its_users_only(database):
    deploy(database, "engine_policy.dmn", "engine_uses_policy.bpmn", "approval.bpmn")
    name, content = data_file("engine_policy.dmn")
    changed = content.replace(b"<text>2</text>", b"<text>3</text>")
    assert changed != content

    result = deploy(database, (name, changed))

    assert [(i.kind, i.key, i.version, i.status) for i in result.items] == [
        ("process", "engine_uses_policy", 2, "new"),
        ("decision", "engine_policy", 2, "new"),
    ]
    assert versions(database, "approval") == [1]
    assert versions(database, "engine_uses_policy") == [1, 2]
    with database.read() as session:
        latest = deployments.latest_definition(session, "engine_uses_policy")
        # The process's own file did not change: version 2 points at it.
        assert latest.file.filename == "engine_uses_policy.bpmn"
        assert latest.deployment_id == result.deployment_id


def test_changed_decision_is_used_by_new_instances(database):
    deploy(database, "engine_policy.dmn", "engine_uses_policy.bpmn")
    old = start(database, "engine_uses_policy", variables={"kind": "hardware"})
    name, content = data_file("engine_policy.dmn")
    deploy(database, (name, content.replace(b"<text>2</text>", b"<text>3</text>")))
    new = start(database, "engine_uses_policy", variables={"kind": "hardware"})

    with database.read() as session:
        from engine import instances

        steps = {
            i: instances.describe_instance(session, i).data.get("steps")
            for i in (old, new)
        }
    assert steps == {old: 2, new: 3}


def test_deployment_records_who_when_source_and_checksums(database):
    before = datetime.now(UTC)
    result = deploy(database, "approval.bpmn", "engine_policy.dmn", user="dana")

    with database.read() as session:
        deployment = session.get(Deployment, result.deployment_id)
        assert deployment.deployed_by == "dana"
        assert deployment.source == "tests"
        assert deployment.name == "approval.bpmn, engine_policy.dmn"
        assert deployment.deployed_at.tzinfo is not None
        assert deployment.deployed_at >= before.replace(microsecond=0)
        files = {f.filename: (f.sha256, f.size, f.content) for f in deployment.files}
    for name in ("approval.bpmn", "engine_policy.dmn"):
        content = (DATA / name).read_bytes()
        assert files[name] == (
            hashlib.sha256(content).hexdigest(),
            len(content),
            content,
        )


def test_redeploying_older_content_reuses_the_stored_spec(database):
    deploy(database, "approval.bpmn")
    deploy(database, approval_variant(b"First approval", b"Approval 1"))
    third = deploy(database, "approval.bpmn")

    assert [(i.version, i.status) for i in third.items] == [(3, "new")]
    with database.read() as session:
        hashes = list(
            session.scalars(
                select(ProcessDefinition.spec_sha256).order_by(
                    ProcessDefinition.version
                )
            )
        )
        blob = session.get(SpecBlob, hashes[0])
        assert hashlib.sha256(blob.content.encode()).hexdigest() == hashes[0]
    assert hashes[0] == hashes[2] != hashes[1]
    assert count(database, SpecBlob) == 2


def test_decision_versions_count_up(database):
    deploy(database, "engine_policy.dmn", "engine_uses_policy.bpmn")
    name, content = data_file("engine_policy.dmn")
    deploy(database, (name, content.replace(b"<text>2</text>", b"<text>4</text>")))

    with database.read() as session:
        rows = session.execute(
            select(DecisionDefinition.key, DecisionDefinition.version).order_by(
                DecisionDefinition.version
            )
        ).all()
    assert [tuple(r) for r in rows] == [("engine_policy", 1), ("engine_policy", 2)]


def test_starting_an_unknown_key_says_what_is_deployed(database):
    deploy(database, "approval.bpmn")

    with pytest.raises(NotFound) as err:
        start(database, "missing")

    assert str(err.value) == (
        "No process with key 'missing' is deployed (deployed keys: approval); "
        "deploy it first with `provisioning deploy`."
    )


def test_list_definitions_orders_by_key_and_version(database):
    deploy(database, "approval.bpmn", "engine_form.bpmn")
    deploy(database, approval_variant(b"First approval", b"Approval 1"))

    with database.read() as session:
        listed = [(d.key, d.version) for d in deployments.list_definitions(session)]
    assert listed == [("approval", 1), ("approval", 2), ("engine_form", 1)]


def test_same_process_under_another_file_name_creates_no_version(database):
    deploy(database, "approval.bpmn")
    _, content = data_file("approval.bpmn")

    renamed = deploy(database, ("renamed.bpmn", content))
    back = deploy(database, "approval.bpmn")

    for result in (renamed, back):
        assert result.deployment_id is None
        assert [(i.key, i.version, i.status) for i in result.items] == [
            ("approval", 1, "unchanged")
        ]
    assert versions(database, "approval") == [1]
    assert count(database, Deployment) == 1
    assert count(database, SpecBlob) == 1


def test_same_called_process_under_another_file_name_creates_no_version(database):
    deploy(database, "engine_child.bpmn", "engine_waits.bpmn")
    _, child = data_file("engine_child.bpmn")

    result = deploy(database, ("child_renamed.bpmn", child), "engine_waits.bpmn")

    assert result.deployment_id is None
    assert versions(database, "engine_waits") == [1]
    assert versions(database, "engine_child") == [1]


def _store_as_an_earlier_release_did(db, key: str, filename: str) -> str:
    """Rewrite the stored spec of ``key`` v1 with its file name, as before 2.x."""
    with db.write() as session:
        definition = deployments.latest_definition(session, key)
        blob = session.get(SpecBlob, definition.spec_sha256)
        bundle = json.loads(blob.content)
        bundle["spec"]["file"] = filename
        legacy = json.dumps(bundle, sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(legacy.encode()).hexdigest()
        session.add(SpecBlob(sha256=digest, content=legacy))
        session.flush()
        definition.spec_sha256 = digest
        session.flush()
        session.delete(blob)
    return digest


def test_spec_stored_with_its_file_name_stays_loadable_and_unchanged(database):
    deploy(database, "approval.bpmn")
    legacy = _store_as_an_earlier_release_did(database, "approval", "approval.bpmn")

    again = deploy(database, "approval.bpmn")
    instance_id = start(database, "approval")

    assert again.deployment_id is None
    assert [(i.version, i.status) for i in again.items] == [(1, "unchanged")]
    with database.read() as session:
        definition = deployments.latest_definition(session, "approval")
        assert definition.spec_sha256 == legacy
    assert task_of(database, instance_id, "approve1").name == "First approval"


def test_changed_process_stored_with_its_file_name_gets_a_new_version(database):
    deploy(database, "approval.bpmn")
    _store_as_an_earlier_release_did(database, "approval", "approval.bpmn")

    result = deploy(database, approval_variant(b"First approval", b"Approval 1"))

    assert [(i.version, i.status) for i in result.items] == [(2, "new")]


def _refusal(database, *files, **kwargs) -> str:
    with pytest.raises(DeploymentError) as err:
        deploy(database, *files, **kwargs)
    return str(err.value)


def _one_problem(text: str) -> str:
    return f"Deployment refused, nothing was deployed (1 problem):\n  {text}"


def test_deployment_name_over_the_limit_is_refused(database):
    text = _refusal(database, "approval.bpmn", name="n" * 201)

    assert text == _one_problem(
        "(deployment): the deployment name is 201 characters long, more than the "
        "limit of 200; give a shorter name."
    )
    assert count(database, Deployment) == 0
    assert count(database, SpecBlob) == 0


def test_deployment_name_at_the_limit_is_stored(database):
    result = deploy(database, "approval.bpmn", name="n" * 200)

    with database.read() as session:
        assert session.get(Deployment, result.deployment_id).name == "n" * 200


def test_file_name_over_the_limit_is_refused(database):
    _, content = data_file("approval.bpmn")
    long_name = "a" * 296 + ".bpmn"

    text = _refusal(database, (long_name, content))

    assert text == _one_problem(
        f"{long_name}: the file name is 301 characters long, more than the limit "
        "of 300; rename the file."
    )
    assert count(database, Deployment) == 0
    assert count(database, DeploymentFile) == 0


def test_file_name_at_the_limit_is_stored(database):
    _, content = data_file("approval.bpmn")
    name = "a" * 295 + ".bpmn"

    deploy(database, (name, content))

    with database.read() as session:
        assert deployments.latest_definition(session, "approval").file.filename == (
            name
        )


def test_process_id_and_name_over_the_limit_are_refused(database):
    _, content = data_file("approval.bpmn")
    key, name = "p" * 201, "N" * 301
    content = content.replace(b'"approval"', f'"{key}"'.encode()).replace(
        b'name="Approval"', f'name="{name}"'.encode()
    )

    with pytest.raises(DeploymentError) as err:
        deploy(database, ("long.bpmn", content))

    assert [str(p) for p in err.value.problems] == [
        f"long.bpmn, line 3, element '{key}': the id is 201 characters long, more "
        "than the limit of 200; give the process or decision a shorter id in the "
        "modeler.",
        f"long.bpmn, line 3, element '{key}': the name is 301 characters long, "
        "more than the limit of 300; give the process or decision a shorter name "
        "in the modeler.",
    ]
    assert count(database, Deployment) == 0
