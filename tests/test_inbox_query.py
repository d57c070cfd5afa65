"""The inbox query: filters, order and counts are done in SQL, in scope."""

from __future__ import annotations

from datetime import timedelta

from helpers_engine import APAC_APPROVER, APPROVER, REQUESTER, deploy, start
from sqlalchemy import update

from engine import instances
from engine.identity import Actor
from engine.instances import TaskFilter
from engine.models import HumanTask, utcnow


def _ids(database, actor, **kwargs):
    with database.read() as session:
        return [t.instance_id for t in instances.list_tasks(session, actor, **kwargs)]


def _count(database, actor, where=None):
    with database.read() as session:
        return instances.count_tasks(session, actor, where)


def _age(database, instance_id, *, days, due_in_days=None):
    now = utcnow()
    with database.write() as session:
        session.execute(
            update(HumanTask)
            .where(HumanTask.instance_id == instance_id)
            .values(
                created_at=now - timedelta(days=days),
                due_at=None
                if due_in_days is None
                else now + timedelta(days=due_in_days),
            )
        )


def test_filters_order_and_counts(database):
    deploy(database, "approval.bpmn")
    paris = start(database, "approval")
    emea = start(database, "approval", actor=Actor("zoe", "acme/emea"))
    apac = start(database, "approval", actor=Actor("yan", "acme/apac"))
    _age(database, paris, days=10, due_in_days=-1)
    _age(database, emea, days=2, due_in_days=3)
    _age(database, apac, days=0)

    assert _ids(database, APPROVER) == [paris, emea, apac]
    assert _ids(database, APPROVER, order="newest") == [apac, emea, paris]
    assert _ids(database, APPROVER, order="due") == [paris, emea, apac]
    assert _count(database, APPROVER) == 3

    assert _ids(database, APPROVER, where=TaskFilter(domain_path="acme/emea")) == [
        paris,
        emea,
    ]
    assert _ids(database, APPROVER, where=TaskFilter(older_than=timedelta(days=7))) == [
        paris
    ]
    assert _ids(database, APPROVER, where=TaskFilter(due="overdue")) == [paris]
    assert _ids(database, APPROVER, where=TaskFilter(due="week")) == [paris, emea]
    assert _ids(database, APPROVER, where=TaskFilter(due="none")) == [apac]
    assert _count(database, APPROVER, TaskFilter(queue="token_distributor")) == 0
    assert _count(database, APPROVER, TaskFilter(domain_path="acme/emea")) == 2

    # Scope and separation of duties hold under every filter.
    assert _ids(database, APAC_APPROVER) == [apac]
    assert _count(database, APAC_APPROVER, TaskFilter(domain_path="acme/emea")) == 0
    assert _ids(database, REQUESTER) == []
    assert _ids(database, APPROVER, limit=1, offset=1) == [emea]
