"""An mkdocs hook: pages made of a root file (SECURITY.md, CHANGELOG.md, CONTRIBUTING.md).

A page whose line is `--8<-- "NAME.md"`, for one of the root files below, gets that file's text
with its links rewritten for the site: `](docs/x.md)` (right on GitHub, from the root) becomes
`](x.md)`. pymdownx.snippets would include the file as is, and those links would then be broken
on the site (and fail `mkdocs build --strict`). A missing file fails the build.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ROOT_FILES = ("SECURITY.md", "CHANGELOG.md", "CONTRIBUTING.md")
_INCLUDE = re.compile(r'^--8<-- "(?P<name>[A-Z]+\.md)"\s*$', re.MULTILINE)
_DOCS_LINK = re.compile(r"\]\(docs/")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    root = Path(config["config_file_path"]).parent

    def include(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in ROOT_FILES:
            return match.group(0)  # pymdownx.snippets' business
        text = (root / name).read_text(encoding="utf-8")
        return _DOCS_LINK.sub("](", text)

    return _INCLUDE.sub(include, markdown)
