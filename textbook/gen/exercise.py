"""Exercises (phi-1's CodeExercises): pure render(plan item) -> request, parse(JSON reply) -> Exercise.

A reply is {"prompt", "solution", "tests"}. parse checks its shape with `ast` (never by running it):
the prompt is the signature + docstring of the named function, the solution defines it, the tests
call it. Whether the solution is *right* is the sandbox's job (sandbox.py), never this process's.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any

from textbook.gen.plan import PlanItem
from textbook.gen.request import ParseError, Rendered, rendered
from textbook.prompts import Prompts

TEMPLATE = "exercise"
CODE_CHARS = 8000  # per field: a short exercise; the bound also stops a grammar-constrained model looping in a string
_CODE_FIELD = {"type": "string", "minLength": 1, "maxLength": CODE_CHARS}
SCHEMA = {
    "type": "object",
    "properties": {"prompt": _CODE_FIELD, "solution": _CODE_FIELD, "tests": _CODE_FIELD},
    "required": ["prompt", "solution", "tests"],
    "additionalProperties": False,
}
_FENCE = re.compile(r"^\s*```[a-zA-Z0-9]*\s*\n(.*?)\n?```\s*$", re.DOTALL)

# Appended after solution + tests in the sandbox: runs every test_* function the teacher wrote, in order.
RUNNER = """

if __name__ == "__main__":
    _tests = [(_n, _f) for _n, _f in list(globals().items()) if _n.startswith("test") and callable(_f)]
    if not _tests:
        raise SystemExit("no test functions were defined")
    for _n, _f in _tests:
        _f()
    print(f"{len(_tests)} tests passed")
"""


@dataclass(frozen=True, slots=True)
class Exercise:
    prompt: str
    solution: str
    tests: str


def render(prompts: Prompts, item: PlanItem) -> Rendered:
    return rendered(prompts.get(TEMPLATE), **item.template_vars())


def _code(value: Any, field: str) -> tuple[str, ast.Module]:
    if not isinstance(value, str) or not value.strip():
        raise ParseError("parse_missing_field", f"{field!r} must be a non-empty string of Python code")
    fenced = _FENCE.match(value)
    code = (fenced.group(1) if fenced else value).strip("\n") + "\n"
    try:
        return code, ast.parse(code)
    except SyntaxError as exc:
        raise ParseError("parse_syntax", f"{field} line {exc.lineno}: {exc.msg}") from None


def _function(module: ast.Module, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    return next((n for n in module.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name), None)


def parse(value: Any, function_name: str) -> Exercise:
    """Validate the teacher's JSON (ParseError is a ValueError, so the teacher retries on it)."""
    if not isinstance(value, dict):
        raise ParseError("parse_not_object", 'expected a JSON object {"prompt", "solution", "tests"}')
    prompt, prompt_ast = _code(value.get("prompt"), "prompt")
    solution, solution_ast = _code(value.get("solution"), "solution")
    tests, tests_ast = _code(value.get("tests"), "tests")

    stub = _function(prompt_ast, function_name)
    if stub is None:
        raise ParseError("parse_wrong_name", f"the prompt does not define `{function_name}`")
    if ast.get_docstring(stub) is None:
        raise ParseError("parse_no_docstring", f"`{function_name}` in the prompt has no docstring")
    body = stub.body[1:]  # after the docstring only `pass` or `...` may follow: the body is the exercise
    if any(not isinstance(n, (ast.Pass, ast.Expr)) or (isinstance(n, ast.Expr) and not isinstance(n.value, ast.Constant)) for n in body):
        raise ParseError("parse_prompt_has_body", "the prompt gives away an implementation after the docstring")
    if _function(solution_ast, function_name) is None:
        raise ParseError("parse_wrong_name", f"the solution does not define `{function_name}` at top level")
    if not any(isinstance(n, ast.Name) and n.id == function_name for n in ast.walk(tests_ast)):
        raise ParseError("parse_tests_unused", f"the tests never call `{function_name}`")
    if not any(isinstance(n, ast.Assert) for n in ast.walk(tests_ast)):
        raise ParseError("parse_tests_no_assert", "the tests contain no assert statement")
    return Exercise(prompt, solution, tests)


def program(exercise: Exercise) -> str:
    """The script the sandbox runs: solution, then tests, then the runner."""
    return f"{exercise.solution}\n\n{exercise.tests}{RUNNER}"
