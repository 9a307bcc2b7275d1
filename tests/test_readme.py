"""The README's two commands are the ones that work: CI runs the second verbatim."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```sh\n(.+?)\n```", text)


def test_readme_opens_with_the_demo_and_the_test_command() -> None:
    demo, tests = readme_commands()[:2]
    assert "acquire-async demo" in demo
    assert "pytest" in tests
    head = (ROOT / "README.md").read_text().split("---", 1)[0]
    assert head.count("```sh") == 2  # exactly two commands before anything else


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    tests = readme_commands()[1]
    assert tests in (ROOT / ".ci" / "run").read_text()
