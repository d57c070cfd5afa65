"""SpiffWorkflow integration: parser, task specs, serializer.

The product reads Camunda-flavoured diagrams. SpiffWorkflow's
``CamundaParser`` keeps forms but drops routing (candidate groups and users,
assignee, due date) and treats a ``camunda:type="external"`` service task as a
no-op; the subclasses here keep both.

Instance state is stored without its spec: :func:`dump_state` leaves the spec
out and :func:`load_workflow` puts back the spec objects that
:func:`engine.deployments.load_spec` caches by content hash, so restoring a
workflow never re-parses or re-builds a spec.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from uuid import UUID

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.parser.util import full_tag
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.serializer.default.task_spec import BpmnTaskSpecConverter
from SpiffWorkflow.bpmn.serializer.default.workflow import BpmnWorkflowConverter
from SpiffWorkflow.bpmn.serializer.workflow import VERSION as SERIALIZER_VERSION
from SpiffWorkflow.bpmn.specs.defaults import ScriptTask, ServiceTask
from SpiffWorkflow.camunda.parser import CamundaParser
from SpiffWorkflow.camunda.parser.task_spec import (
    CAMUNDA_MODEL_NS,
    CamundaTaskParser,
    ScriptTaskParser,
    UserTaskParser,
)
from SpiffWorkflow.camunda.serializer.config import CAMUNDA_CONFIG
from SpiffWorkflow.camunda.serializer.task_spec import UserTaskConverter
from SpiffWorkflow.camunda.specs.user_task import UserTask

from . import services

logger = logging.getLogger(__name__)

__all__ = [
    "SERIALIZER_VERSION",
    "ExternalServiceTask",
    "ProvisioningParser",
    "RoutedUserTask",
    "canonical_spec_bundle",
    "dump_spec_bundle",
    "dump_state",
    "load_spec_bundle",
    "load_workflow",
]


class RoutedUserTask(UserTask):
    """A Camunda user task that also keeps who may work it and when it is due."""

    def __init__(
        self,
        wf_spec,
        bpmn_id,
        form,
        candidate_groups=None,
        candidate_users=None,
        assignee=None,
        due_date=None,
        **kwargs,
    ):
        super().__init__(wf_spec, bpmn_id, form, **kwargs)
        self.candidate_groups = candidate_groups or []
        self.candidate_users = candidate_users or []
        self.assignee = assignee
        self.due_date = due_date


class ExternalServiceTask(ServiceTask):
    """A ``camunda:type="external"`` service task that calls a registered handler."""

    def __init__(self, wf_spec, bpmn_id, topic=None, **kwargs):
        super().__init__(wf_spec, bpmn_id, **kwargs)
        self.topic = topic

    def _execute(self, task):
        if self.topic is None:
            return True
        services.call(self.topic, task)
        return True


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


class RoutedUserTaskParser(UserTaskParser):
    def create_task(self):
        def camunda(name):
            return self.node.get(f"{{{CAMUNDA_MODEL_NS}}}{name}")

        return self.spec_class(
            self.spec,
            self.bpmn_id,
            form=self.get_form(),
            candidate_groups=_split(camunda("candidateGroups")),
            candidate_users=_split(camunda("candidateUsers")),
            assignee=camunda("assignee"),
            due_date=camunda("dueDate"),
            **self.bpmn_attributes,
        )


class ExternalServiceTaskParser(CamundaTaskParser):
    def create_task(self):
        topic = None
        if self.node.get(f"{{{CAMUNDA_MODEL_NS}}}type") == "external":
            topic = self.node.get(f"{{{CAMUNDA_MODEL_NS}}}topic")
        return self.spec_class(
            self.spec, self.bpmn_id, topic=topic, **self.bpmn_attributes
        )


class LoopingScriptTaskParser(CamundaTaskParser, ScriptTaskParser):
    """Camunda's script task parser, with Camunda's multi-instance tasks.

    SpiffWorkflow's own gives a multi-instance script task the plain BPMN
    classes, which the Camunda serializer cannot store, so such a diagram
    could not be deployed.
    """


class ProvisioningParser(CamundaParser):
    """CamundaParser that keeps routing attributes and external service topics."""

    OVERRIDE_PARSER_CLASSES = {
        **CamundaParser.OVERRIDE_PARSER_CLASSES,
        full_tag("scriptTask"): (LoopingScriptTaskParser, ScriptTask),
        full_tag("userTask"): (RoutedUserTaskParser, RoutedUserTask),
        full_tag("serviceTask"): (ExternalServiceTaskParser, ExternalServiceTask),
    }


class RoutedUserTaskConverter(UserTaskConverter):
    def to_dict(self, spec):
        dct = super().to_dict(spec)
        dct["candidate_groups"] = spec.candidate_groups
        dct["candidate_users"] = spec.candidate_users
        dct["assignee"] = spec.assignee
        dct["due_date"] = spec.due_date
        return dct


class ExternalServiceTaskConverter(BpmnTaskSpecConverter):
    def to_dict(self, spec):
        dct = self.get_default_attributes(spec)
        dct["topic"] = spec.topic
        return dct


class SpeclessWorkflowConverter(BpmnWorkflowConverter):
    """Serialize a workflow without its spec; restore it with given spec objects."""

    def to_dict(self, workflow):
        dct = super(BpmnWorkflowConverter, self).to_dict(workflow)
        dct["subprocesses"] = self.mapping_to_dict(workflow.subprocesses)
        dct["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
        return dct

    def from_dict(self, dct, spec=None, subprocess_specs=None):
        workflow = self.target_class(spec, subprocess_specs, deserializing=True)
        workflow.tasks = self.mapping_from_dict(dct["tasks"], UUID, workflow=workflow)
        workflow.task_tree = workflow.tasks.get(UUID(dct["root"]))
        self.set_default_attributes(workflow, dct)
        self.subprocesses_from_dict(dct["subprocesses"], workflow)
        workflow.bpmn_events = self.registry.restore(dct.pop("bpmn_events", []))
        return workflow


def _make_serializer() -> BpmnWorkflowSerializer:
    config = dict(CAMUNDA_CONFIG)
    config.pop(UserTask)
    config[RoutedUserTask] = RoutedUserTaskConverter
    config[ExternalServiceTask] = ExternalServiceTaskConverter
    config[BpmnWorkflow] = SpeclessWorkflowConverter
    return BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(config))


_serializer = _make_serializer()


def dump_spec_bundle(spec, subprocess_specs: dict) -> str:
    """Serialize a process spec and its call activities' specs, canonically.

    The names of the files the specs were parsed from are left out: they say
    where a process was deployed from, not what it does, and the bundle's hash
    decides whether a deployment makes a new version.
    """
    bundle = {
        "spec": _serializer.to_dict(spec),
        "subprocess_specs": {
            k: _serializer.to_dict(v) for k, v in subprocess_specs.items()
        },
    }
    return _canonical(bundle)


def canonical_spec_bundle(content: str) -> str:
    """Return a stored bundle as :func:`dump_spec_bundle` writes it today.

    Bundles stored before file names were left out still hold them; this is
    how their content compares with a newly parsed spec.
    """
    return _canonical(json.loads(content))


def _canonical(bundle: dict[str, Any]) -> str:
    bundle["spec"]["file"] = None
    for subprocess_spec in bundle["subprocess_specs"].values():
        subprocess_spec["file"] = None
    return json.dumps(bundle, sort_keys=True, separators=(",", ":"))


def load_spec_bundle(content: str):
    """Return ``(spec, subprocess_specs)`` from :func:`dump_spec_bundle` output."""
    bundle = json.loads(content)
    spec = _serializer.from_dict(bundle["spec"])
    subprocess_specs = {
        k: _serializer.from_dict(v) for k, v in bundle["subprocess_specs"].items()
    }
    return spec, subprocess_specs


def dump_state(workflow: BpmnWorkflow) -> str:
    """Serialize a workflow's state, without its spec, as JSON."""
    registry = _serializer.registry
    registry._encoder_mode = True
    try:
        dct = _serializer.to_dict(workflow)
        dct[_serializer.VERSION_KEY] = _serializer.VERSION
        return json.dumps(dct, cls=_serializer._encoder_cls, separators=(",", ":"))
    finally:
        registry._encoder_mode = False


def load_workflow(state: str, spec, subprocess_specs, script_engine) -> BpmnWorkflow:
    """Restore a workflow from :func:`dump_state` output and its spec objects.

    States written by an older serializer version are migrated by
    SpiffWorkflow's own migrations before they are restored.
    """
    dct: dict[str, Any] = json.loads(state, cls=_serializer.json_decoder_cls)
    if dct.get(_serializer.VERSION_KEY) != _serializer.VERSION:
        # Migrations expect the spec in place; give them the serialized one.
        dct["spec"] = _serializer.to_dict(spec)
        dct["subprocess_specs"] = {
            k: _serializer.to_dict(v) for k, v in subprocess_specs.items()
        }
        _serializer.migrate(dct)
        dct.pop("spec")
        dct.pop("subprocess_specs")
    else:
        dct.pop(_serializer.VERSION_KEY)
    workflow = _serializer.registry.restore(
        dct, spec=spec, subprocess_specs=subprocess_specs
    )
    workflow.script_engine = script_engine
    return workflow
