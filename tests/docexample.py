"""A docs page's example must be a test file's code: the same imports, the same functions.

Example::

    def test_the_documented_example_is_this_file() -> None:
        assert_example_is_in(DOCS / "testing.md", "## Webhooks", Path(__file__))
"""

from __future__ import annotations

import ast
import re
from pathlib import Path


def assert_example_is_in(page: Path, heading: str, test_file: Path) -> None:
    """The first ``python`` block after ``heading`` in ``page``: each of its imports is one of
    ``test_file``'s, and each ``def`` or ``async def`` in it equals the one of that name there
    (compared with ``ast.dump``, which leaves out line numbers and comments)."""
    section = page.read_text().split(heading, 1)[1]
    example = re.search(r"```python\n(.+?)```", section, re.DOTALL)
    assert example is not None, f"no python example after {heading!r} in {page.name}"
    documented = ast.parse(example.group(1))
    here = ast.parse(test_file.read_text())
    defs = (ast.AsyncFunctionDef, ast.FunctionDef)
    functions = {node.name: node for node in here.body if isinstance(node, defs)}
    imported = {
        (getattr(node, "module", None), alias.name)
        for node in here.body
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    for node in documented.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                assert (getattr(node, "module", None), alias.name) in imported, alias.name
        else:
            assert isinstance(node, defs)
            assert ast.dump(node) == ast.dump(functions[node.name]), f"{node.name} differs"
