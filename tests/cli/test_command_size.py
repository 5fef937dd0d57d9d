"""Commands stay thin: every function in kpictl/cli/ (commands, their helpers, the renderers)
fits in 25 lines, signature included. Work that does not fit belongs in a service
(kpictl/services/<area>/) or in a renderer of its own (kpictl/cli/render/). No database."""

from __future__ import annotations

import ast
from pathlib import Path

CLI = Path(__file__).resolve().parents[2] / "kpictl" / "cli"
MAX_LINES = 25


def function_lengths() -> dict[str, int]:
    lengths = {}
    for path in sorted(CLI.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                where = f"{path.relative_to(CLI.parent.parent)}:{node.lineno} {node.name}"
                lengths[where] = node.end_lineno - node.lineno + 1  # type: ignore[operator]
    return lengths


def test_every_cli_function_fits_in_25_lines():
    lengths = function_lengths()
    assert len(lengths) > 100, "the walk found too few functions: it is broken"
    too_long = {where: lines for where, lines in lengths.items() if lines > MAX_LINES}
    assert too_long == {}, f"longer than {MAX_LINES} lines: split them"
