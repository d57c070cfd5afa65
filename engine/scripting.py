"""A sandbox for the Python in BPMN diagrams and DMN decision tables.

Script tasks, gateway conditions, multi-instance cardinalities, timer
expressions and decision table cells are Python source written by process
designers. SpiffWorkflow's default ``PythonScriptEngine`` runs that source with
plain ``eval``/``exec``, so anyone allowed to deploy a diagram could read files,
open sockets or start processes on the server with its privileges. This module
compiles the source with RestrictedPython instead: imports, names and attributes
starting with ``_``, frame and code introspection and ``str.format`` are
refused, and the code only sees the task data, a small set of safe builtins and
the helpers registered here.

Deployment calls :func:`check_source` to refuse a diagram before it ever runs;
:class:`RestrictedScriptEngine` refuses the same code again at run time.

The sandbox does not bound time or memory: ``while True: pass`` or
``10 ** 10 ** 9`` still occupy a worker. Only trusted designers should deploy.
"""

from __future__ import annotations

import ast
import logging
import operator
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal
from types import CodeType
from typing import Any, Literal

from RestrictedPython import (
    RestrictingNodeTransformer,
    compile_restricted_eval,
    compile_restricted_exec,
    safe_builtins,
)
from RestrictedPython.Guards import (
    full_write_guard,
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
    safer_getattr_raise,
)
from RestrictedPython.transformer import IOPERATOR_TO_STR
from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.script_engine.python_engine import PythonScriptEngine
from SpiffWorkflow.bpmn.script_engine.python_environment import TaskDataEnvironment
from SpiffWorkflow.exceptions import SpiffWorkflowException

logger = logging.getLogger(__name__)

Mode = Literal["eval", "exec"]

#: How many compiled expressions and scripts one environment keeps.
DEFAULT_CACHE_SIZE = 2048

# RestrictedPython's list is a good start, but a diagram has no use for
# classes, and raising SystemExit or KeyboardInterrupt from a script would
# slip past the ``except Exception`` in SpiffWorkflow and stop the worker.
_REMOVED_BUILTINS = frozenset(
    {
        "__build_class__",
        "setattr",
        "delattr",
        "BaseException",
        "SystemExit",
        "KeyboardInterrupt",
        "GeneratorExit",
    }
)

# RestrictedPython leaves these out because they iterate in C past the
# ``_getiter_`` guard; that guard only matters for Zope's protected objects,
# and task data holds plain values, so they are safe here.
_EXTRA_BUILTINS: dict[str, Any] = {
    "min": min,
    "max": max,
    "sum": sum,
    "sorted": sorted,
    "reversed": reversed,
    "enumerate": enumerate,
    "zip": zip,
    "map": map,
    "filter": filter,
    "any": any,
    "all": all,
    "list": list,
    "dict": dict,
    "set": set,
    "frozenset": frozenset,
    "tuple": tuple,
    "datetime": datetime,
    "timedelta": timedelta,
    "date": date,
    "Decimal": Decimal,
}

#: The names every script and expression can use besides the task data.
SAFE_BUILTINS: Mapping[str, Any] = {
    **{
        name: value
        for name, value in safe_builtins.items()
        if name not in _REMOVED_BUILTINS
    },
    **_EXTRA_BUILTINS,
}

_INPLACE_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "+=": operator.iadd,
    "-=": operator.isub,
    "*=": operator.imul,
    "/=": operator.itruediv,
    "//=": operator.ifloordiv,
    "%=": operator.imod,
    "**=": operator.ipow,
    "<<=": operator.ilshift,
    ">>=": operator.irshift,
    "&=": operator.iand,
    "|=": operator.ior,
    "^=": operator.ixor,
    "@=": operator.imatmul,
}


def _inplace_var(op: str, target: Any, value: Any) -> Any:
    """Apply an augmented assignment such as ``x += 1``."""
    return _INPLACE_OPERATORS[op](target, value)


def _apply(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a function with unpacked ``*args`` or ``**kwargs``."""
    return function(*args, **kwargs)


# RestrictedPython rewrites attribute access, subscripts, iteration and
# unpacking into calls of these names. They go into the globals of every run,
# after the task data, so a data field cannot replace a guard.
_GUARDS: dict[str, Any] = {
    # The plain safer_getattr answers None for a missing attribute, which
    # turns a designer's typo into a puzzling error further on.
    "_getattr_": safer_getattr_raise,
    "_getitem_": operator.getitem,
    "_getiter_": iter,
    "_write_": full_write_guard,
    "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
    "_unpack_sequence_": guarded_unpack_sequence,
    "_inplacevar_": _inplace_var,
    "_apply_": _apply,
}

_HELPERS_HINT = "use the helpers listed in the documentation"

# Calls refused at deploy time with the reason a designer can act on. None of
# these names exists at run time either; the check only makes refusal early
# and clear.
_REFUSED_CALLS: dict[str, str] = {
    **dict.fromkeys(
        ["open", "input", "print", "breakpoint", "help"],
        "scripts cannot read or write files or the console",
    ),
    **dict.fromkeys(
        ["eval", "exec", "compile"],
        "scripts cannot run code built from strings",
    ),
    **dict.fromkeys(
        [
            "getattr",
            "setattr",
            "delattr",
            "hasattr",
            "type",
            "vars",
            "dir",
            "globals",
            "locals",
            "object",
            "super",
            "memoryview",
            "format",
        ],
        "scripts cannot inspect objects or the interpreter",
    ),
}


# RestrictedPython's own refusals say what is wrong but not what to write
# instead; these patterns turn them into messages a designer can act on.
_UNDERSCORE_NAME = re.compile(
    r'^"(?P<name>[^"]+)" is an invalid variable name because it starts with "_"\.?$'
)
_UNDERSCORE_ATTRIBUTE = re.compile(
    r'^"(?P<name>[^"]+)" is an invalid attribute name because it starts with "_"\.?$'
)
_ROLES_NAME = re.compile(
    r'^"(?P<name>[^"]+)" is an invalid (variable|attribute) name because it ends '
    r'with "__roles__"\.$'
)
_INSPECT_ATTRIBUTE = re.compile(
    r'^"(?P<name>[^"]+)" is a restricted name, that is forbidden to access in '
    r"RestrictedPython\.$"
)
_RESERVED_NAME = re.compile(r'^"(?P<name>[^"]+)" is a reserved name\.$')


def _for_designer(message: str) -> str:
    """Reword a refusal of RestrictedPython to say what to do instead."""
    if match := _UNDERSCORE_NAME.match(message):
        return (
            f'"{match["name"]}" is not allowed in diagram scripts: names starting '
            "with an underscore are reserved for Python's internals; start "
            f"variable names with a letter and {_HELPERS_HINT}"
        )
    if match := _UNDERSCORE_ATTRIBUTE.match(message):
        return (
            f'"{match["name"]}" is not allowed in diagram scripts: attributes '
            "starting with an underscore reach into Python's internals; work "
            "with the task data and the helpers listed in the documentation"
        )
    if match := _ROLES_NAME.match(message):
        return (
            f'"{match["name"]}" is not allowed in diagram scripts: names ending '
            'with "__roles__" are reserved for the sandbox; choose another name'
        )
    if match := _INSPECT_ATTRIBUTE.match(message):
        return (
            f'"{match["name"]}" is not allowed in diagram scripts: it reaches '
            f"into the interpreter's frames and code; {_HELPERS_HINT}"
        )
    if match := _RESERVED_NAME.match(message):
        return (
            f'"{match["name"]}" is a reserved name in diagram scripts; choose '
            "another variable name"
        )
    if "diagram scripts" in message:
        return message
    return (
        f"{message.rstrip('.')} in diagram scripts; write that part of the script "
        "with plain statements and expressions"
    )


class DiagramScriptPolicy(RestrictingNodeTransformer):
    """RestrictedPython's policy, with the refusals a diagram needs on top."""

    def error(self, node: ast.AST, info: str) -> None:
        """Record a refusal, worded to say what to write instead."""
        super().error(node, _for_designer(info))

    def visit_Import(self, node: ast.Import) -> ast.AST:
        """Refuse ``import x``: no module is available to a diagram."""
        self._refuse_import(node)
        return node

    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.AST:
        """Refuse ``from x import y`` for the same reason."""
        self._refuse_import(node)
        return node

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        """Refuse class definitions; dicts and lists hold structured data."""
        self.error(
            node,
            "class definitions are not allowed in diagram scripts; "
            "use dicts and lists for structured data",
        )
        return self.node_contents_visit(node)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        """Refuse calls of builtins that reach past the task data."""
        if isinstance(node.func, ast.Name) and node.func.id in _REFUSED_CALLS:
            reason = _REFUSED_CALLS[node.func.id]
            self.error(
                node,
                f'"{node.func.id}()" is not allowed in diagram scripts: '
                f"{reason}; {_HELPERS_HINT}",
            )
            # The source is refused, so the rewriting done by the base class
            # does not matter; visiting the arguments still reports their
            # own problems.
            return self.node_contents_visit(node)

        return super().visit_Call(node)

    def visit_Name(self, node: ast.Name) -> ast.AST:
        """Refuse ``printed``, which RestrictedPython reserves for itself."""
        # Stores already get RestrictedPython's own "reserved name" message.
        if node.id == "printed" and isinstance(node.ctx, ast.Load):
            self.error(
                node,
                '"printed" is a reserved name in diagram scripts; '
                "choose another variable name",
            )

        return super().visit_Name(node)

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        """Refuse ``.format()`` and ``.format_map()``, whatever the object."""
        if node.attr in ("format", "format_map"):
            # A format string can walk attributes ("{0.__class__}") that the
            # attribute guard never sees.
            self.error(
                node,
                f'".{node.attr}()" is not allowed in diagram scripts: format '
                "strings can reach object internals; use an f-string instead",
            )

        return super().visit_Attribute(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        """Explain how to write ``d['k'] += 1``, which is refused."""
        if isinstance(node.target, ast.Subscript | ast.Attribute):
            target = ast.unparse(node.target)
            augmented = IOPERATOR_TO_STR[type(node.op)]
            self.error(
                node,
                f'"{target} {augmented} ..." is not allowed in diagram scripts; '
                f"write {target} = {target} {augmented[:-1]} ... instead",
            )
            return node

        return super().visit_AugAssign(node)

    def _refuse_import(self, node: ast.Import | ast.ImportFrom) -> None:
        self.error(
            node,
            f'"{ast.unparse(node)}" is not allowed in diagram scripts: '
            f"imports are refused; {_HELPERS_HINT}",
        )


class ScriptRefusedError(SyntaxError):
    """The source of a script or expression breaks the sandbox's rules.

    A ``SyntaxError`` so that SpiffWorkflow treats it like one: the DMN engine
    relies on ``validate`` raising ``SyntaxError`` to tell ``> 5`` from ``5``,
    and the script engine takes the line number from ``lineno``.
    """

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))
        self.lineno = _first_line_number(problems)

    def __str__(self) -> str:
        return self.msg


def _first_line_number(problems: list[str]) -> int:
    """Return the line of the first problem, or 0 when none is named."""
    for problem in problems:
        head = problem.partition(":")[0]
        if head.startswith("Line ") and head[5:].isdigit():
            return int(head[5:])

    return 0


def _normalise(source: str, mode: Mode) -> str:
    """Strip the whitespace around an expression, as ``eval`` would."""
    # Diagram XML often wraps a condition in newlines and indentation, which
    # would otherwise be an "unexpected indent".
    return source.strip() if mode == "eval" else source


def _compile(source: str, mode: Mode) -> tuple[CodeType | None, list[str]]:
    """Compile source under the sandbox policy; return the code or problems."""
    if mode == "eval" and not source:
        return None, ["Line 1: syntax error: the expression is empty"]

    try:
        tree = ast.parse(source, "<string>", mode)
    except SyntaxError as err:
        # Some errors, such as a null byte, come without a line.
        return None, [f"Line {err.lineno or 1}: syntax error: {err.msg}"]

    compiler = compile_restricted_eval if mode == "eval" else compile_restricted_exec
    result = compiler(tree, filename="<string>", policy=DiagramScriptPolicy)
    # A nested refusal can be reported twice for the same node.
    problems = list(dict.fromkeys(result.errors))
    return (None, problems) if problems else (result.code, [])


def check_source(source: str, mode: Mode) -> list[str]:
    """List what keeps a script or expression from running in the sandbox.

    :param source: the Python text of a script (``mode="exec"``) or of an
        expression such as a condition or a decision table cell
        (``mode="eval"``).
    :param mode: ``"exec"`` or ``"eval"``.
    :return: one message a line, each starting with ``Line N:``; empty when
        the source may run.
    :raises ValueError: if ``mode`` is neither ``"eval"`` nor ``"exec"``.
    """
    if mode not in ("eval", "exec"):
        raise ValueError(f'mode must be "eval" or "exec", not {mode!r}')

    _code, problems = _compile(_normalise(source, mode), mode)
    return problems


# The nodes of a literal: constants, signs, and containers of literals. Such an
# expression has the same value in every instance, and evaluating it cannot
# take long, so deployment can check its value.
_LITERAL_NODES = (
    ast.Expression,
    ast.Constant,
    ast.UnaryOp,
    ast.UAdd,
    ast.USub,
    ast.Not,
    ast.Tuple,
    ast.List,
    ast.Set,
    ast.Dict,
    ast.Load,
)


def is_literal(expression: str) -> bool:
    """Return whether an expression is a literal such as ``2``, ``"x"`` or ``True``.

    :param expression: the Python text of an expression.
    :return: ``False`` also when the expression does not compile.
    """
    try:
        tree = ast.parse(expression.strip(), "<string>", "eval")
    except SyntaxError:
        return False

    return all(isinstance(node, _LITERAL_NODES) for node in ast.walk(tree))


def _describe(err: BaseException) -> str:
    """Name an exception and its message for a designer."""
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _drop_empty_notes(err: SpiffWorkflowException) -> None:
    """Remove the ``None`` note SpiffWorkflow adds for some NameErrors."""
    # Its "did you mean" hint returns None for a NameError worded otherwise
    # than "name 'x' is not defined", and str() of the exception then fails.
    err.notes = [note for note in err.notes if note]


class RestrictedEnvironment(TaskDataEnvironment):
    """Run scripts and expressions against task data inside the sandbox.

    As with SpiffWorkflow's ``TaskDataEnvironment``, a script's top-level
    names are task data: ``x = a + 1`` reads ``a`` from and stores ``x`` in the
    task data, and functions, the guards and the external context are removed
    again afterwards.

    :param helpers: extra functions scripts may call, by name, on top of
        :data:`SAFE_BUILTINS`. Like the builtins they sit behind the task data,
        so a data field of the same name hides a helper rather than breaking
        every script.
    :param cache_size: how many compiled sources to keep; the same conditions
        run for every instance, so compiling each once matters.
    """

    def __init__(
        self,
        helpers: Mapping[str, Callable[..., Any]] | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ):
        super().__init__(dict(_GUARDS))
        self.builtins: dict[str, Any] = {**SAFE_BUILTINS, **(helpers or {})}
        self._cache: OrderedDict[tuple[Mode, str], tuple[CodeType | None, list[str]]]
        self._cache = OrderedDict()
        self._cache_size = cache_size
        # One engine serves every request thread of the web app.
        self._cache_lock = threading.Lock()

    def compile(self, source: str, mode: Mode) -> CodeType:
        """Compile source for the sandbox, reusing earlier compilations.

        :param source: a script (``"exec"``) or an expression (``"eval"``).
        :param mode: ``"exec"`` or ``"eval"``.
        :return: the code object to run with :meth:`evaluate` or
            :meth:`execute`.
        :raises ScriptRefusedError: if the source has a syntax error or breaks
            the sandbox's rules; ``problems`` lists every finding.
        """
        key = (mode, _normalise(source, mode))
        with self._cache_lock:
            compiled = self._cache.get(key)
            if compiled is not None:
                self._cache.move_to_end(key)

        if compiled is None:
            # Refusals are kept too: the DMN engine probes every cell that
            # starts with an operator, and that probe always fails.
            compiled = _compile(key[1], mode)
            with self._cache_lock:
                self._cache[key] = compiled
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)

        code, problems = compiled
        if code is None:
            raise ScriptRefusedError(problems)

        return code

    def evaluate(
        self,
        expression: str,
        context: dict[str, Any],
        external_context: Mapping[str, Any] | None = None,
    ) -> Any:
        """Return the value of an expression over task data, leaving it as is."""
        code = self.compile(expression, "eval")
        self._prepare_context(context)
        run_globals = {
            **(external_context or {}),
            **context,
            **self.globals,
            "__builtins__": self.builtins,
        }
        return eval(code, run_globals)  # noqa: S307 - restricted code only

    def execute(
        self,
        script: str,
        context: dict[str, Any],
        external_context: Mapping[str, Any] | None = None,
    ) -> bool:
        """Run a script whose top-level names read and write the task data."""
        code = self.compile(script, "exec")
        external_context = external_context or {}
        self.check_for_overwrite(context, external_context)
        self._prepare_context(context)
        context.update(external_context)
        context.update(self.globals)
        context["__builtins__"] = self.builtins
        try:
            exec(code, context)  # noqa: S102 - restricted code only
        finally:
            self._remove_globals_and_functions_from_context(context, external_context)

        return True


class RestrictedScriptEngine(PythonScriptEngine):
    """A SpiffWorkflow script engine that runs diagram code in the sandbox.

    :param environment: the environment to run in; a new
        :class:`RestrictedEnvironment` with ``helpers`` when omitted.
    :param helpers: extra functions for a new environment, by name.
    :raises TypeError: if both ``environment`` and ``helpers`` are given.
    """

    environment: RestrictedEnvironment

    def __init__(
        self,
        environment: RestrictedEnvironment | None = None,
        *,
        helpers: Mapping[str, Callable[..., Any]] | None = None,
    ):
        if environment is not None and helpers is not None:
            raise TypeError(
                "Pass helpers to the RestrictedEnvironment, not to the engine, "
                "when giving both."
            )

        super().__init__(environment or RestrictedEnvironment(helpers))

    def validate(self, expression: str) -> None:
        """Check that an expression may run in the sandbox.

        :raises ScriptRefusedError: (a ``SyntaxError``) with the problems.
        """
        self.environment.compile(expression, "eval")

    def evaluate(
        self,
        task: Any,
        expression: str,
        external_context: Mapping[str, Any] | None = None,
    ) -> Any:
        """Evaluate an expression over a task's data.

        :raises WorkflowTaskException: naming the expression, the error type
            and its message when the expression is refused or fails.
        """
        try:
            return self.environment.evaluate(expression, task.data, external_context)
        except SpiffWorkflowException as err:
            err.add_note(f"Error evaluating expression '{expression}'")
            raise
        except Exception as err:
            wrapped = WorkflowTaskException(
                f"Error evaluating expression '{expression}': {_describe(err)}",
                task=task,
                exception=err,
            )
            _drop_empty_notes(wrapped)
            raise wrapped from err

    def create_task_exec_exception(
        self, task: Any, script: str, err: Exception
    ) -> SpiffWorkflowException:
        """Wrap an error raised by a script, naming its type, text and line."""
        if isinstance(err, SpiffWorkflowException):
            return super().create_task_exec_exception(task, script, err)

        line_number, error_line = self.get_error_line_number_and_content(script, err)
        detail = _describe(err)
        # A refusal already names its lines; a run-time error does not.
        if line_number and not isinstance(err, ScriptRefusedError):
            detail += f" (line {line_number}: {error_line.strip()!r})"

        wrapped = WorkflowTaskException(
            detail,
            task=task,
            exception=err,
            line_number=line_number,
            error_line=error_line,
        )
        wrapped.__cause__ = err
        _drop_empty_notes(wrapped)
        return wrapped
