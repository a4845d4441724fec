"""How the code is laid out: small modules and functions, no import cycles through the package root."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "asynfusion"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
FLAT_EXCEPTIONS = {("cli.py", "build_parser")}  # one flat list of argparse options, no logic


def modules():
    return sorted(PACKAGE.rglob("*.py"))


def test_no_module_is_over_400_lines():
    long = {path.relative_to(PACKAGE).as_posix(): n for path in modules()
            if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, long


def test_no_function_is_over_80_lines():
    long = {}
    for path in modules():
        name = path.relative_to(PACKAGE).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and (name, node.name) not in FLAT_EXCEPTIONS:
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long[f"{name}:{node.name}"] = length
    assert not long, long
