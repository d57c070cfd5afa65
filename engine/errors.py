"""Exceptions raised by the engine.

Every error that a user, a process designer or an administrator can cause is
a :class:`ProvisioningError`. Its message says what was wrong, where, and what
to do, so the CLI, the web pages and the API show it as it is; nothing else
should ever reach them. The hierarchy::

    ProvisioningError
    ├── ConfigurationError          a setting is missing or malformed
    ├── DeploymentError             a deployment was refused (holds problems)
    ├── NotFound                    a definition, instance, task or user is unknown
    ├── PermissionDenied            the user may not do this
    ├── ConflictError               the state changed under the caller
    │   ├── TaskAlreadyCompleted    someone else completed the task first
    │   └── InstanceNotActive       the instance has ended or is cancelled
    ├── ValidationFailed            submitted data is invalid (holds field errors)
    └── ServiceError                a service task handler failed (incident)
"""

from __future__ import annotations

from dataclasses import dataclass


class ProvisioningError(Exception):
    """Base class of every error the engine reports to a person."""

    #: short machine-readable code used by the API's error shape
    code = "error"


class ConfigurationError(ProvisioningError):
    code = "configuration_error"


@dataclass(frozen=True)
class Problem:
    """One problem found in a deployment, located as precisely as known."""

    file: str
    message: str
    line: int | None = None
    element_id: str | None = None

    def __str__(self) -> str:
        where = self.file
        if self.line:
            where += f", line {self.line}"
        if self.element_id:
            where += f", element '{self.element_id}'"
        return f"{where}: {self.message}"


class DeploymentError(ProvisioningError):
    """A deployment was refused; nothing of it was stored."""

    code = "deployment_invalid"

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(
            f"Deployment refused, nothing was deployed ({len(problems)} {noun}):\n"
            f"{lines}"
        )


class NotFound(ProvisioningError):
    code = "not_found"


class PermissionDenied(ProvisioningError):
    code = "forbidden"


class ConflictError(ProvisioningError):
    code = "conflict"


class TaskAlreadyCompleted(ConflictError):
    code = "task_already_completed"


class InstanceNotActive(ConflictError):
    code = "instance_not_active"


class ValidationFailed(ProvisioningError):
    """Submitted data failed validation; ``field_errors`` maps field to message."""

    code = "validation_failed"

    def __init__(self, message: str, field_errors: dict[str, str] | None = None):
        self.message = message
        self.field_errors = field_errors or {}
        detail = "; ".join(f"{k}: {v}" for k, v in self.field_errors.items())
        super().__init__(f"{message} {detail}".strip() if detail else message)


class ServiceError(ProvisioningError):
    """Raised by a service task handler for a failure worth retrying later."""

    code = "service_failed"
