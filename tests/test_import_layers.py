"""tests/ and bench/ never import each other; what both need lives in testsupport/.

A cycle between them meant running a benchmark imported test modules (and their
fixtures' assumptions) and a test could break because a benchmark changed. The
layers, lowest first: libs/services/replyline, testsupport, then tests and bench
side by side.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: folder -> top-level packages its modules must not import
FORBIDDEN = {
    "tests": {"bench"},
    "bench": {"tests"},
    "testsupport": {"tests", "bench"},
}


def imported_tops(tree: ast.AST) -> set[str]:
    """The top-level package of every absolute import in ``tree`` (also inside functions)."""
    tops: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            tops.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            tops.add(node.module.split(".")[0])
    return tops


def layer_violations(root: Path = REPO) -> list[str]:
    found = []
    for folder, forbidden in FORBIDDEN.items():
        for path in sorted((root / folder).rglob("*.py")):
            if ".venv" in path.parts:
                continue
            bad = imported_tops(ast.parse(path.read_text(), str(path))) & forbidden
            found.extend(f"{path.relative_to(root).as_posix()} imports {top}" for top in sorted(bad))
    return found


def test_tests_and_bench_do_not_import_each_other() -> None:
    assert layer_violations() == []


def test_the_scan_sees_imports_inside_functions(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "bench").mkdir()
    (tmp_path / "testsupport").mkdir()
    (tmp_path / "tests" / "t.py").write_text("def f():\n    from bench import stats\n")
    (tmp_path / "bench" / "b.py").write_text("import tests.harness\n")
    (tmp_path / "testsupport" / "s.py").write_text("from bench.stats import say\nfrom . import x\n")
    assert layer_violations(tmp_path) == [
        "tests/t.py imports bench",
        "bench/b.py imports tests",
        "testsupport/s.py imports bench",
    ]
