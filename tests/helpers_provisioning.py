"""Shared fixtures for provisioning tests: a small organisation, ready to use.

``make_org(database, settings)`` (or the ``org`` fixture in a test module that
imports it) gives an :class:`Org` with the shipped ``bpmn/`` folder deployed,
security domains, people holding every role, token models, hardware tokens in
stock and a few tokens already handed out::

    acme                      admin (administrator), toni (token administrator)
    acme/emea                 anna, marc (request approvers), lucia (distributor),
                              emma (administrator of acme/emea only)
    acme/emea/paris           jdoe, claire (users), hugo (approver of paris)
    acme/americas             john (approver), david (distributor), emily (user)
    acme/apac                 ken, wei, yuna (approvers), sanjay (distributor),
                              arjun (user)

Token models: SID700 and SID800 (hardware), APP (software). Stock: SID700
E-700-1..5 and SID800 E-800-1..3 in acme/emea, SID700 A-700-1..3 in
acme/americas and P-700-1..3 in acme/apac. jdoe holds J-SOON (SID700, active,
expires in 20 days) and J-LATER (SID700, active, expires in 100 days). Group
``vpn-users`` exists. With ``passwords=True`` every password is
:data:`PASSWORD`.

In a test module::

    @pytest.fixture
    def org(database, settings) -> Org:
        return make_org(database, settings)

The helpers each run in their own write transaction, like separate web
requests would, and return plain values (ids), so tests never hold ORM
objects across transactions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from engine import deployments, instances
from engine.config import Settings
from engine.db import Database
from engine.identity import (
    ADMINISTRATOR,
    REQUEST_APPROVER,
    TOKEN_ADMINISTRATOR,
    TOKEN_DISTRIBUTOR,
    Actor,
    actor_for,
)
from engine.models import HumanTask, TaskStatus
from engine.provisioning import directory, inventory, requests
from engine.provisioning.request_models import ProvisioningRequest

ROOT = Path(__file__).resolve().parent.parent
BPMN_DIR = ROOT / "bpmn"
PASSWORD = "correct horse battery"

DOMAINS = ("acme", "acme/emea", "acme/emea/paris", "acme/americas", "acme/apac")

#: username -> (home domain, ((role, scope), ...))
PEOPLE: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "admin": ("acme", ((ADMINISTRATOR, "acme"),)),
    "toni": ("acme", ((TOKEN_ADMINISTRATOR, "acme"),)),
    "emma": ("acme/emea", ((ADMINISTRATOR, "acme/emea"),)),
    "anna": ("acme/emea", ((REQUEST_APPROVER, "acme/emea"),)),
    "marc": ("acme/emea", ((REQUEST_APPROVER, "acme/emea"),)),
    "lucia": ("acme/emea", ((TOKEN_DISTRIBUTOR, "acme/emea"),)),
    "hugo": ("acme/emea/paris", ((REQUEST_APPROVER, "acme/emea/paris"),)),
    "jdoe": ("acme/emea/paris", ()),
    "claire": ("acme/emea/paris", ()),
    "john": ("acme/americas", ((REQUEST_APPROVER, "acme/americas"),)),
    "david": ("acme/americas", ((TOKEN_DISTRIBUTOR, "acme/americas"),)),
    "emily": ("acme/americas", ()),
    "ken": ("acme/apac", ((REQUEST_APPROVER, "acme/apac"),)),
    "wei": ("acme/apac", ((REQUEST_APPROVER, "acme/apac"),)),
    "yuna": ("acme/apac", ((REQUEST_APPROVER, "acme/apac"),)),
    "sanjay": ("acme/apac", ((TOKEN_DISTRIBUTOR, "acme/apac"),)),
    "arjun": ("acme/apac", ()),
}

HARDWARE_MODELS = ("SID700", "SID800")
SOFTWARE_MODEL = "APP"
GROUP = "vpn-users"
SHIPPING_ADDRESS = "1 Rue de la Paix, 75002 Paris"


@dataclass
class Org:
    """A deployed, populated organisation and shortcuts to act in it."""

    database: Database
    settings: Settings
    people: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = field(
        default_factory=lambda: dict(PEOPLE)
    )

    # -- people ----------------------------------------------------------------

    def actor(self, username: str) -> Actor:
        """Return the actor of ``username`` as the engine loads it now."""
        with self.database.read() as session:
            return actor_for(session, username)

    def __getitem__(self, username: str) -> Actor:
        return self.actor(username)

    # -- requests --------------------------------------------------------------

    def submit(self, username: str, request_type: str, **form: Any) -> int:
        """Submit a request as ``username``; return its id."""
        with self.database.write() as session:
            request = requests.submit_request(
                session,
                actor=actor_for(session, username),
                request_type=request_type,
                form=form,
                settings=self.settings,
            )
            return request.id

    def new_hardware(self, username: str = "jdoe", model: str = "SID700") -> int:
        return self.submit(
            username,
            "new_token",
            token_class="hardware",
            token_model=model,
            shipping_address=SHIPPING_ADDRESS,
            justification="Starting in the Paris office next week",
        )

    def new_software(self, username: str = "jdoe") -> int:
        return self.submit(
            username,
            "new_token",
            token_class="software",
            token_model=SOFTWARE_MODEL,
            justification="I work from home on Fridays",
        )

    def request(self, request_id: int) -> ProvisioningRequest:
        """Return a detached copy of the request row as stored now."""
        with self.database.read() as session:
            row = session.get(ProvisioningRequest, request_id)
            session.expunge(row)
            return row

    def view(self, username: str, request_id: int) -> requests.RequestView:
        """Return the request as ``username`` sees it, detached but loaded."""
        with self.database.read() as session:
            view = requests.get_request(
                session, actor_for(session, username), request_id
            )
            # Detach before the read transaction ends, so that the objects keep
            # their loaded values instead of being expired by the rollback.
            session.expunge_all()
            return view

    def open_tasks(self, request_id: int) -> list[tuple[str, str]]:
        """Return ``(task id, task spec)`` of every open task of a request."""
        with self.database.read() as session:
            instance_id = session.get(ProvisioningRequest, request_id).instance_id
            return [
                (t.id, t.task_spec)
                for t in session.scalars(
                    select(HumanTask)
                    .where(
                        HumanTask.instance_id == instance_id,
                        HumanTask.status == TaskStatus.OPEN,
                    )
                    .order_by(HumanTask.created_at, HumanTask.id)
                )
            ]

    def task(self, request_id: int, spec: str | None = None) -> str:
        """Return the id of the one open task (of ``spec``) of a request."""
        tasks = [t for t, s in self.open_tasks(request_id) if spec in (None, s)]
        assert len(tasks) == 1, (request_id, spec, self.open_tasks(request_id))
        return tasks[0]

    def decide(
        self, username: str, request_id: int, decision: str = "approve", **kwargs: Any
    ) -> None:
        """Take the open approval step of a request as ``username``."""
        task_id = self.task(request_id, requests.APPROVE_STEP)
        if decision in ("reject", "cancel"):
            kwargs.setdefault("comment", f"{decision} by {username}")
        with self.database.write() as session:
            requests.decide(
                session,
                actor_for(session, username),
                task_id,
                decision=decision,
                settings=self.settings,
                **kwargs,
            )

    def distribute(self, username: str, request_id: int, **kwargs: Any) -> None:
        """Take the open distribution step of a request as ``username``."""
        task_id = self.task(request_id)
        with self.database.write() as session:
            requests.distribute(
                session,
                actor_for(session, username),
                task_id,
                settings=self.settings,
                **kwargs,
            )

    def complete(self, username: str, task_id: str, data: dict[str, Any]) -> None:
        """Complete a task through the engine API, bypassing this module."""
        with self.database.write() as session:
            instances.complete_task(
                session,
                task_id,
                actor=actor_for(session, username),
                data=data,
                settings=self.settings,
            )

    def inbox(self, username: str) -> list[str]:
        """Return the ids of the open tasks in ``username``'s inbox."""
        with self.database.read() as session:
            return [
                t.id
                for t in instances.list_tasks(session, actor_for(session, username))
            ]

    def approval_count(self, request_id: int) -> int:
        """Return how many approval steps the policy gave a request."""
        with self.database.read() as session:
            instance_id = session.get(ProvisioningRequest, request_id).instance_id
            return instances.describe_instance(session, instance_id).data[
                "approval_steps"
            ]


def deploy_folder(database: Database, folder: Path = BPMN_DIR) -> None:
    """Deploy every diagram and decision table of ``folder``."""
    with database.write() as session:
        deployments.deploy(
            session,
            deployments.read_paths([folder]),
            deployed_by="admin",
            source="tests",
        )


def make_org(database: Database, settings: Settings, *, passwords: bool = False) -> Org:
    """Populate ``database`` with the organisation described in the module.

    :param passwords: give everyone :data:`PASSWORD` (slow: one scrypt hash a
        user); tests that log in need it, the others do not.
    """
    deploy_folder(database)
    today = date.today()
    with database.write() as session:
        for path in DOMAINS:
            directory.create_domain(session, path, actor="system")
        for username, (domain, roles) in PEOPLE.items():
            directory.create_user(
                session,
                username=username,
                display_name=username.capitalize(),
                email=f"{username}@example.org",
                domain_path=domain,
                password=PASSWORD if passwords else None,
                roles=roles,
                actor="system",
            )
        for code in HARDWARE_MODELS:
            inventory.create_token_model(
                session, code=code, name=f"{code} key fob", token_class="hardware"
            )
        inventory.create_token_model(
            session,
            code=SOFTWARE_MODEL,
            name="Authenticator app",
            token_class="software",
        )
        directory.create_group(session, GROUP, "Remote access")

        toni = actor_for(session, "toni")
        expiry = (today + timedelta(days=3 * 365)).isoformat()
        stock = {
            "acme/emea": [f"E-700-{i},SID700" for i in range(1, 6)]
            + [f"E-800-{i},SID800" for i in range(1, 4)],
            "acme/americas": [f"A-700-{i},SID700" for i in range(1, 4)],
            "acme/apac": [f"P-700-{i},SID700" for i in range(1, 4)],
        }
        for path, rows in stock.items():
            lines = "\n".join(f"{row},{expiry}" for row in rows)
            inventory.import_tokens_csv(
                session, toni, f"serial,model,expiry\n{lines}\n", domain_path=path
            )
        owned = [("J-SOON", 20), ("J-LATER", 100)]
        inventory.import_tokens_csv(
            session,
            toni,
            "serial,model,expiry\n"
            + "".join(
                f"{serial},SID700,{(today + timedelta(days=days)).isoformat()}\n"
                for serial, days in owned
            ),
            domain_path="acme/emea",
        )
        for serial, _ in owned:
            inventory.assign_and_ship(
                session,
                serial=serial,
                owner="jdoe",
                request_id=None,
                model_code="SID700",
                shipping_address=SHIPPING_ADDRESS,
                carrier="dhl",
                tracking_number=None,
                actor=toni,
            )
            inventory.enable_hardware_token(session, actor_for(session, "jdoe"), serial)

    return Org(database=database, settings=settings)
