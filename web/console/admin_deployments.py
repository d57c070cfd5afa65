"""Administration of process models: upload, validate, deploy, versions, diff."""

from __future__ import annotations

import logging

from flask import flash, redirect, render_template, request, url_for
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import deployments
from engine.diagram_diff import DiagramUnreadable, diff_processes
from engine.errors import DeploymentError, NotFound, Problem
from engine.identity import ADMINISTRATOR
from engine.models import (
    DecisionDefinition,
    Deployment,
    InstanceStatus,
    ProcessDefinition,
    ProcessInstance,
)

from ..auth import role_required
from ..forms import ModelerForm, UploadDeploymentForm
from .admin_bp import bp
from .base import (
    actor,
    client_source,
    int_arg,
    reading,
    rolled_back,
    settings,
    writing,
)

logger = logging.getLogger(__name__)


@bp.route("/deployments", methods=["GET", "POST"])
@role_required(ADMINISTRATOR)
def deployments_page():
    """List process definitions and deployments; upload files to validate or deploy."""
    form = UploadDeploymentForm()
    report = None
    status = 200
    if form.validate_on_submit():
        files = [
            (f.filename, f.read())
            for f in request.files.getlist(form.files.name)
            if f and f.filename
        ]
        if not files:
            form.files.errors = ["Choose at least one .bpmn or .dmn file."]
            status = 422
        else:
            dry_run = request.form.get("action") == "validate"
            report = run_deployment(files, dry_run=dry_run, name=form.name.data)
            status = 422 if report["problems"] else 200
    elif request.method == "POST":
        status = 422
    with reading() as session:
        context = _overview(session)
    return (
        render_template("admin/deployments.html", form=form, report=report, **context),
        status,
    )


def run_deployment(
    files: list[tuple[str, bytes]], *, dry_run: bool, name: str | None = None
) -> dict:
    """Validate or deploy ``files``; return the report the page shows.

    A dry run deploys inside a transaction of its own that is rolled back, so
    it checks exactly what a deployment would check and stores nothing, and
    the page read afterwards does not show the versions it would have made.
    """
    me = actor()
    report = {"dry_run": dry_run, "files": [f for f, _ in files], "problems": []}
    session_scope = rolled_back() if dry_run else writing()
    try:
        with session_scope as session:
            result = deployments.deploy(
                session,
                files,
                deployed_by=me.username,
                source=client_source(),
                name=name or None,
                max_bytes=settings().max_upload_bytes,
            )
    except DeploymentError as err:
        report["problems"] = err.problems
        report["message"] = str(err).splitlines()[0]
        return report
    report["items"] = result.items
    report["deployment_id"] = None if dry_run else result.deployment_id
    report["changed"] = any(i.status == "new" for i in result.items)
    if not dry_run:
        logger.info(
            "Deployment %s from the console by %s",
            result.deployment_id,
            me.username,
            extra={"deployment_id": result.deployment_id},
        )
    return report


def _overview(session: Session) -> dict:
    definitions = deployments.list_definitions(session)
    running = _running_counts(session)
    by_key: dict[str, list[ProcessDefinition]] = {}
    for d in definitions:
        by_key.setdefault(d.key, []).append(d)
    processes = [
        {
            "key": key,
            "latest": versions[-1],
            "versions": list(reversed(versions)),
            "running": sum(running.get(v.id, 0) for v in versions),
            "running_by_version": {v.version: running.get(v.id, 0) for v in versions},
        }
        for key, versions in sorted(by_key.items())
    ]
    decisions = list(
        session.scalars(
            select(DecisionDefinition).order_by(
                DecisionDefinition.key, DecisionDefinition.version.desc()
            )
        )
    )
    recent = list(
        session.scalars(select(Deployment).order_by(Deployment.id.desc()).limit(15))
    )
    return {"processes": processes, "decisions": decisions, "recent": recent}


def _running_counts(session: Session) -> dict[int, int]:
    rows = session.execute(
        select(ProcessInstance.definition_id, func.count())
        .where(ProcessInstance.status.in_(InstanceStatus.ACTIVE))
        .group_by(ProcessInstance.definition_id)
    )
    return {definition_id: count for definition_id, count in rows}


@bp.get("/deployments/<int:deployment_id>")
@role_required(ADMINISTRATOR)
def deployment_detail(deployment_id: int):
    """Show one deployment: who, when, files, and the versions it created."""
    with reading() as session:
        deployment = session.get(Deployment, deployment_id)
        if deployment is None:
            raise NotFound(f"Deployment {deployment_id} does not exist.")
        created = list(
            session.scalars(
                select(ProcessDefinition).where(
                    ProcessDefinition.deployment_id == deployment_id
                )
            )
        ) + list(
            session.scalars(
                select(DecisionDefinition).where(
                    DecisionDefinition.deployment_id == deployment_id
                )
            )
        )
        return render_template(
            "admin/deployment.html", deployment=deployment, created=created
        )


def _versions(session: Session, key: str) -> list[ProcessDefinition]:
    versions = list(
        session.scalars(
            select(ProcessDefinition)
            .where(ProcessDefinition.key == key)
            .order_by(ProcessDefinition.version)
        )
    )
    if not versions:
        raise NotFound(
            f"No process with key '{key}' is deployed; check the key in the "
            "list of process models."
        )
    return versions


@bp.get("/definitions/<key>")
@role_required(ADMINISTRATOR)
def definition(key: str):
    """Show a process's versions, one version's diagram, and a diff of two."""
    with reading() as session:
        versions = _versions(session, key)
        by_number = {v.version: v for v in versions}
        shown = by_number.get(int_arg("version") or versions[-1].version)
        if shown is None:
            raise NotFound(f"Process '{key}' has no version {int_arg('version')}.")
        running = _running_counts(session)
        diff, diff_error = None, None
        old_v, new_v = int_arg("from"), int_arg("to")
        if old_v and new_v:
            if old_v not in by_number or new_v not in by_number:
                raise NotFound(
                    f"Process '{key}' has versions "
                    f"{', '.join(str(v) for v in by_number)}; pick two of them."
                )
            try:
                diff = diff_processes(
                    by_number[old_v].file.content, by_number[new_v].file.content, key
                )
            except DiagramUnreadable as err:
                diff_error = str(err)
        elif len(versions) > 1:
            old_v, new_v = versions[-2].version, versions[-1].version
        return render_template(
            "admin/definition.html",
            key=key,
            versions=list(reversed(versions)),
            shown=shown,
            running=running,
            xml=shown.file.content.decode("utf-8", "replace"),
            diff=diff,
            diff_error=diff_error,
            old_v=old_v,
            new_v=new_v,
        )


# -- the modeler ------------------------------------------------------------


@bp.get("/modeler")
@role_required(ADMINISTRATOR)
def modeler_index():
    """List the deployed processes and decisions to open in the modeler."""
    with reading() as session:
        context = _overview(session)
    latest_decisions = {}
    for d in context["decisions"]:
        latest_decisions.setdefault(d.key, d)
    return render_template(
        "admin/modeler_index.html",
        processes=context["processes"],
        decisions=list(latest_decisions.values()),
    )


@bp.route("/modeler/process/<key>", methods=["GET", "POST"])
@role_required(ADMINISTRATOR)
def modeler(key: str):
    """Edit the latest version of a process; validate it or deploy it."""
    with reading() as session:
        latest = _versions(session, key)[-1]
        xml = latest.file.content.decode("utf-8", "replace")
        filename = latest.file.filename
        version = latest.version
    return _editor_page("admin/modeler.html", xml, filename, key=key, version=version)


@bp.route("/modeler/decision/<key>", methods=["GET", "POST"])
@role_required(ADMINISTRATOR)
def decision_editor(key: str):
    """Edit the latest version of a decision table; validate it or deploy it."""
    with reading() as session:
        latest = session.scalars(
            select(DecisionDefinition)
            .where(DecisionDefinition.key == key)
            .order_by(DecisionDefinition.version.desc())
            .limit(1)
        ).first()
        if latest is None:
            raise NotFound(f"No decision with key '{key}' is deployed.")
        xml = latest.file.content.decode("utf-8", "replace")
        filename = latest.file.filename
        version = latest.version
    return _editor_page(
        "admin/decision_editor.html", xml, filename, key=key, version=version
    )


@bp.route("/modeler/new", methods=["GET", "POST"])
@role_required(ADMINISTRATOR)
def modeler_new():
    """Draw a new process and deploy it."""
    return _editor_page("admin/modeler.html", "", "", key=None, version=None)


def _editor_page(template: str, xml: str, filename: str, **context):
    deployed_xml = xml
    form = ModelerForm()
    report = None
    status = 200
    if request.method == "GET":
        form.xml.data = xml
        form.filename.data = filename
    elif form.validate_on_submit():
        filename = (form.filename.data or "").strip()
        xml = form.xml.data
        problem = _check_filename(filename, template)
        if problem:
            report = {"dry_run": True, "problems": [problem], "files": [filename]}
        else:
            dry_run = request.form.get("action") != "deploy"
            report = run_deployment(
                [(filename, xml.encode("utf-8"))],
                dry_run=dry_run,
                name=f"{filename} from the modeler",
            )
            if not dry_run and not report["problems"]:
                flash(_deployed_message(report), "success")
                if context.get("key") and template == "admin/modeler.html":
                    return redirect(url_for("admin.definition", key=context["key"]))
                return redirect(url_for("admin.deployments_page"))
        status = 422 if report["problems"] else 200
    else:
        status = 422
        xml = form.xml.data or xml
    # A diagram sent back by Validate (or a refused Deploy) still differs from
    # the deployed one: the page warns before leaving it.
    unsaved = request.method == "POST" and xml != deployed_xml
    return (
        render_template(
            template,
            form=form,
            xml=xml,
            filename=filename,
            report=report,
            unsaved=unsaved,
            **context,
        ),
        status,
    )


def _check_filename(filename: str, template: str) -> Problem | None:
    suffix = ".dmn" if "decision" in template else ".bpmn"
    if not filename or "/" in filename or "\\" in filename:
        return Problem(
            filename or "(no name)",
            f"give the file a plain name ending in {suffix}, such as "
            f"my_process{suffix}.",
        )
    if not filename.lower().endswith(suffix):
        return Problem(filename, f"the file name must end in {suffix}.")
    return None


def _deployed_message(report: dict) -> str:
    new = [f"{i.key} version {i.version}" for i in report["items"] if i.status == "new"]
    if not new:
        return "Nothing changed: the deployed versions are identical."
    return "Deployed " + ", ".join(new) + "."
