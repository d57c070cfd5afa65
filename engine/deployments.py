"""Deploy BPMN and DMN files as versioned process definitions.

A deployment is all or nothing: every file is checked (see
:mod:`engine.validation`) and parsed together with the definitions already
deployed, and only if nothing is wrong are the new versions stored, in one
transaction. A process gets a new version only when its parsed spec differs
from its latest version, compared by the hash of the serialized spec; so
deploying the same folder twice creates nothing, the same process under
another file name creates nothing either, and a changed decision table gives a
new version to each process that uses it.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from threading import Lock

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .errors import DeploymentError, NotFound, Problem
from .models import (
    DecisionDefinition,
    Deployment,
    DeploymentFile,
    ProcessDefinition,
    SpecBlob,
)
from .spiff import canonical_spec_bundle, dump_spec_bundle, load_spec_bundle
from .validation import SourceFile, build_parser, check_files, spiff_problem

logger = logging.getLogger(__name__)

DEPLOYABLE_SUFFIXES = (".bpmn", ".dmn")

# The widths of the columns that names and ids are stored in. PostgreSQL
# refuses a longer value with an error; SQLite would store it as it is.
MAX_DEPLOYMENT_NAME = Deployment.__table__.c.name.type.length
MAX_FILE_NAME = DeploymentFile.__table__.c.filename.type.length
MAX_KEY = ProcessDefinition.__table__.c.key.type.length
MAX_ELEMENT_NAME = ProcessDefinition.__table__.c.name.type.length


@dataclass(frozen=True)
class DeployedItem:
    """One process or decision of a deployment and what became of it."""

    kind: str
    key: str
    version: int
    status: str


@dataclass(frozen=True)
class DeploymentResult:
    deployment_id: int | None
    items: list[DeployedItem]

    @property
    def changed(self) -> bool:
        return self.deployment_id is not None


def read_paths(paths: Iterable[str | Path]) -> list[tuple[str, bytes]]:
    """Read the files to deploy: files as given, folders by their .bpmn/.dmn files.

    :raises NotFound: a path does not exist, or a folder holds nothing to deploy.
    """
    files: list[tuple[str, bytes]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                p
                for p in path.iterdir()
                if p.suffix.lower() in DEPLOYABLE_SUFFIXES and p.is_file()
            )
            if not found:
                raise NotFound(f"{path} holds no .bpmn or .dmn file to deploy.")
            files.extend((p.name, _read(p)) for p in found)
        elif path.is_file():
            files.append((path.name, _read(path)))
        else:
            raise NotFound(
                f"{path} does not exist; give a .bpmn or .dmn file or a folder."
            )
    return files


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise DeploymentError(
            [
                Problem(
                    file=path.name,
                    message=f"Cannot read {path}: {err.strerror}; check that this "
                    "user may read the file, then deploy again.",
                )
            ]
        ) from None


def deploy(
    session: Session,
    files: list[tuple[str, bytes]],
    *,
    deployed_by: str,
    source: str,
    name: str | None = None,
    max_bytes: int = 2 * 1024 * 1024,
) -> DeploymentResult:
    """Deploy files as new versions of the processes and decisions they define.

    :param files: ``(filename, content)`` pairs of .bpmn and .dmn files.
    :param deployed_by: username of who deploys.
    :param source: where from, e.g. ``"cli on host1"`` or ``"web 10.0.0.5"``.
    :returns: the deployment id (``None`` if nothing changed) and each item's
        key, version and status (``"new"`` or ``"unchanged"``).
    :raises DeploymentError: listing every problem; nothing was stored.
    """
    if not files:
        raise DeploymentError([Problem("(deployment)", "no files were given.")])
    sources = [SourceFile(filename, content) for filename, content in files]
    names = [s.filename for s in sources]
    duplicates = {n for n in names if names.count(n) > 1}
    problems = _name_lengths(name, names)
    problems += [
        Problem(n, "the same file name appears twice in the deployment.")
        for n in sorted(duplicates)
    ]
    problems += check_files(sources, max_bytes)
    problems += _duplicate_ids(sources)
    problems += _id_lengths(sources)
    if problems:
        raise DeploymentError(problems)

    retained = _retained_files(session, sources)
    parser, problems = build_parser(sources + retained)
    if problems:
        raise DeploymentError(problems)

    new_keys = {p for s in sources for p in s.executable_ids}
    bundles: dict[str, tuple[str, SourceFile]] = {}
    for owner in sources + retained:
        for key in owner.executable_ids:
            try:
                spec = parser.get_spec(key)
                subprocess_specs = parser.get_subprocess_specs(key)
            except Exception as err:  # noqa: BLE001 - reported with its location
                problems.append(spiff_problem(err, owner.filename))
                continue
            bundles[key] = (dump_spec_bundle(spec, subprocess_specs), owner)
    if problems:
        raise DeploymentError(problems)

    return _store(session, sources, bundles, new_keys, deployed_by, source, name)


def _name_lengths(name: str | None, filenames: list[str]) -> list[Problem]:
    problems = []
    if name is not None and len(name) > MAX_DEPLOYMENT_NAME:
        problems.append(
            Problem(
                "(deployment)",
                f"the deployment name is {len(name)} characters long, more than "
                f"the limit of {MAX_DEPLOYMENT_NAME}; give a shorter name.",
            )
        )
    for filename in filenames:
        if len(filename) > MAX_FILE_NAME:
            problems.append(
                Problem(
                    filename,
                    f"the file name is {len(filename)} characters long, more "
                    f"than the limit of {MAX_FILE_NAME}; rename the file.",
                )
            )
    return problems


def _id_lengths(sources: list[SourceFile]) -> list[Problem]:
    problems = []
    for s in sources:
        for key in s.executable_ids + s.decision_ids:
            if len(key) > MAX_KEY:
                problems.append(
                    Problem(
                        s.filename,
                        f"the id is {len(key)} characters long, more than the "
                        f"limit of {MAX_KEY}; give the process or decision a "
                        "shorter id in the modeler.",
                        line=_element_line(s, key),
                        element_id=key,
                    )
                )
            element_name = _element_name(s, key)
            if len(element_name) > MAX_ELEMENT_NAME:
                problems.append(
                    Problem(
                        s.filename,
                        f"the name is {len(element_name)} characters long, more "
                        f"than the limit of {MAX_ELEMENT_NAME}; give the process "
                        "or decision a shorter name in the modeler.",
                        line=_element_line(s, key),
                        element_id=key,
                    )
                )
    return problems


def _duplicate_ids(sources: list[SourceFile]) -> list[Problem]:
    seen: dict[str, str] = {}
    problems = []
    for s in sources:
        for key in s.process_ids + s.decision_ids:
            if key in seen:
                problems.append(
                    Problem(
                        s.filename,
                        f"id '{key}' is also defined in "
                        f"{seen[key]}; give each process and "
                        "decision a unique id.",
                        line=_element_line(s, key),
                        element_id=key,
                    )
                )
            seen[key] = s.filename
    return problems


def _element_line(source: SourceFile, element_id: str) -> int | None:
    for element in source.tree.iter():
        if element.get("id") == element_id:
            return element.sourceline
    return None


def _retained_files(session: Session, sources: list[SourceFile]) -> list[SourceFile]:
    """Return the deployed files that the new ones do not replace.

    They are parsed with the new files so that call activities and decision
    references resolve against what is already deployed.
    """
    replaced = {k for s in sources for k in s.process_ids + s.decision_ids}
    latest_files: dict[int, DeploymentFile] = {}
    for model in (ProcessDefinition, DecisionDefinition):
        for row in _latest(session, model):
            latest_files[row.file_id] = row.file

    retained = []
    for file in latest_files.values():
        source = SourceFile(file.filename, file.content)
        check_files([source], max_bytes=len(file.content) + 1)
        if replaced.isdisjoint(source.process_ids + source.decision_ids):
            retained.append(source)
    return retained


def _store(session, sources, bundles, new_keys, deployed_by, source, name):
    latest = {d.key: d for d in _latest_definitions(session)}
    changed: dict[str, tuple[str, str, SourceFile]] = {}
    items: list[DeployedItem] = []
    for key, (content, owner) in sorted(bundles.items()):
        digest = hashlib.sha256(content.encode()).hexdigest()
        current = latest.get(key)
        if current is not None and _same_spec(session, current, content, digest):
            if key in new_keys:
                items.append(DeployedItem("process", key, current.version, "unchanged"))
            continue
        changed[key] = (content, digest, owner)

    latest_decisions = {d.key: d for d in _latest_decisions(session)}
    changed_decisions = []
    for s in sources:
        file_hash = hashlib.sha256(s.content).hexdigest()
        for key in s.decision_ids:
            current = latest_decisions.get(key)
            if current is not None and current.sha256 == file_hash:
                items.append(
                    DeployedItem("decision", key, current.version, "unchanged")
                )
            else:
                changed_decisions.append((key, file_hash, s))

    if not changed and not changed_decisions:
        return DeploymentResult(None, items)

    deployment = Deployment(
        name=name or ", ".join(s.filename for s in sources)[:200],
        deployed_by=deployed_by,
        source=source[:200],
    )
    session.add(deployment)
    stored_files: dict[str, DeploymentFile] = {}
    for s in sources:
        row = DeploymentFile(
            filename=s.filename,
            sha256=hashlib.sha256(s.content).hexdigest(),
            size=len(s.content),
            content=s.content,
        )
        deployment.files.append(row)
        stored_files[s.filename] = row
    session.flush()

    for key, file_hash, s in changed_decisions:
        current = latest_decisions.get(key)
        version = current.version + 1 if current else 1
        session.add(
            DecisionDefinition(
                key=key,
                version=version,
                name=_element_name(s, key),
                sha256=file_hash,
                deployment_id=deployment.id,
                file_id=stored_files[s.filename].id,
            )
        )
        items.append(DeployedItem("decision", key, version, "new"))

    for key, (content, digest, owner) in changed.items():
        if session.get(SpecBlob, digest) is None:
            session.add(SpecBlob(sha256=digest, content=content))
            session.flush()
        current = latest.get(key)
        version = current.version + 1 if current else 1
        file_id = (
            stored_files[owner.filename].id
            if owner.filename in stored_files and owner in sources
            else current.file_id
        )
        session.add(
            ProcessDefinition(
                key=key,
                version=version,
                name=_element_name(owner, key),
                spec_sha256=digest,
                deployment_id=deployment.id,
                file_id=file_id,
            )
        )
        items.append(DeployedItem("process", key, version, "new"))
    session.flush()

    logger.info(
        "Deployed %s by %s: %s",
        deployment.id,
        deployed_by,
        ", ".join(f"{i.key} v{i.version}" for i in items if i.status == "new"),
        extra={"deployment_id": deployment.id},
    )
    items.sort(key=lambda i: (i.kind != "process", i.key))
    return DeploymentResult(deployment.id, items)


def _same_spec(
    session: Session, current: ProcessDefinition, content: str, digest: str
) -> bool:
    """Return whether a new spec bundle is the content of ``current``."""
    if current.spec_sha256 == digest:
        return True
    # A bundle stored by an earlier release may hold the file names the spec
    # came from, and so hash differently for the same process.
    blob = session.get(SpecBlob, current.spec_sha256)
    return blob is not None and canonical_spec_bundle(blob.content) == content


def _element_name(source: SourceFile, key: str) -> str:
    for element in source.tree.iter():
        if element.get("id") == key:
            return element.get("name") or key
    return key


def _latest(session: Session, model):
    """Return the latest version of each key of ``model``, ordered by key."""
    latest = (
        select(model.key, func.max(model.version).label("v"))
        .group_by(model.key)
        .subquery()
    )
    return list(
        session.scalars(
            select(model)
            .join(latest, (model.key == latest.c.key) & (model.version == latest.c.v))
            .order_by(model.key)
        )
    )


def _latest_definitions(session: Session) -> list[ProcessDefinition]:
    return _latest(session, ProcessDefinition)


def _latest_decisions(session: Session) -> list[DecisionDefinition]:
    return _latest(session, DecisionDefinition)


def list_definitions(session: Session) -> list[ProcessDefinition]:
    """Return every version of every process definition, by key then version."""
    return list(
        session.scalars(
            select(ProcessDefinition).order_by(
                ProcessDefinition.key, ProcessDefinition.version
            )
        )
    )


def latest_definition(session: Session, key: str) -> ProcessDefinition:
    """Return the latest version of process ``key``.

    :raises NotFound: no process with that key is deployed.
    """
    definition = session.scalars(
        select(ProcessDefinition)
        .where(ProcessDefinition.key == key)
        .order_by(ProcessDefinition.version.desc())
        .limit(1)
    ).first()
    if definition is None:
        known = (
            ", ".join(sorted({d.key for d in _latest_definitions(session)})) or "none"
        )
        raise NotFound(
            f"No process with key '{key}' is deployed (deployed keys: {known}); "
            "deploy it first with `provisioning deploy`."
        )
    return definition


class _SpecCache:
    """Parsed specs by content hash; specs never change once stored."""

    def __init__(self, size: int = 64):
        self._items: OrderedDict[str, tuple] = OrderedDict()
        self._size = size
        self._lock = Lock()

    def get(self, session: Session, sha256: str):
        with self._lock:
            if sha256 in self._items:
                self._items.move_to_end(sha256)
                return self._items[sha256]
        blob = session.get(SpecBlob, sha256)
        if blob is None:
            raise NotFound(f"Process spec {sha256} is missing from the database.")
        loaded = load_spec_bundle(blob.content)
        with self._lock:
            self._items[sha256] = loaded
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return loaded


_spec_cache = _SpecCache()


def load_spec(session: Session, definition: ProcessDefinition):
    """Return ``(spec, subprocess_specs)`` of a definition, cached by content hash."""
    return _spec_cache.get(session, definition.spec_sha256)
