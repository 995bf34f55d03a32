"""The benchmarks' --help (their module docstrings, printed as written) keeps every line of the source: a command
continued with a backslash shows the backslash and the next line, as the README's copy does."""
from __future__ import annotations

import ast

import pytest

from tests.benchmarks.scripts import BENCHMARKS


@pytest.mark.parametrize("script", sorted(p.name for p in BENCHMARKS.glob("*.py")))
def test_docstring_keeps_its_source_lines(script):
    module = ast.parse((BENCHMARKS / script).read_text(encoding="utf-8"))
    literal = module.body[0].value if module.body and isinstance(module.body[0], ast.Expr) else None
    if not (isinstance(literal, ast.Constant) and isinstance(literal.value, str)):
        pytest.skip("no module docstring")
    assert literal.value.count("\n") == literal.end_lineno - literal.lineno
