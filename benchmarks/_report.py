"""Results and how they are shown: rows of samples, targets, the Markdown and the JSON.

A section (one benchmark) is a :class:`Section` of :class:`Row`\\ s. A row is one contender in
one variant (a payload, an event loop) with its samples; the report shows their median and
min-max spread, never a mean. A row without samples was skipped and says why in ``note``.
"""

from __future__ import annotations

import datetime as dt
import importlib
import importlib.metadata
import json
import os
import platform
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Row", "Section", "Target", "environment", "to_json", "to_markdown", "write"]

# Distributions whose versions the header shows (absent ones show as "not installed").
LIBRARIES = (
    "aiohttp",
    "msgspec",
    "orjson",
    "pydantic",
    "pydantic-core",
    "httpx",
    "httpcore",
    "anyio",
    "sniffio",
    "uvloop",
    "yarl",
    "multidict",
)


@dataclass
class Row:
    """One contender in one variant, with its samples (empty when it was skipped)."""

    contender: str
    variant: str
    unit: str
    samples: list[float] = field(default_factory=list)
    note: str | None = None
    ratio: float | None = None  # the median against the section's reference, if any
    extra: dict[str, list[float]] = field(default_factory=dict)  # more samples, shown as medians
    error: str | None = None  # set when the contender crashed: the run then exits non-zero

    @property
    def median(self) -> float | None:
        """The median sample, or ``None`` for a skipped row."""
        return statistics.median(self.samples) if self.samples else None

    def add_extra(self, name: str, value: float | None) -> None:
        """Record one sample of a secondary measure (``None`` values are ignored)."""
        if value is not None:
            self.extra.setdefault(name, []).append(value)

    def to_json(self) -> dict[str, Any]:
        """The row as JSON-ready data: samples, their median, min, max, and the rest."""
        return {
            "contender": self.contender,
            "variant": self.variant,
            "unit": self.unit,
            "median": self.median,
            "min": min(self.samples) if self.samples else None,
            "max": max(self.samples) if self.samples else None,
            "samples": self.samples,
            "ratio": self.ratio,
            "extra": {name: statistics.median(values) for name, values in self.extra.items()},
            "note": self.note,
            "error": self.error,
        }


@dataclass
class Target:
    """A goal from the issue, e.g. ``ours / orjson ≤ 0.85``; ``ok`` is ``None`` if unmeasured."""

    label: str
    value: float | None
    goal: str
    ok: bool | None

    @classmethod
    def at_most(cls, label: str, value: float | None, limit: float, suffix: str = "x") -> Target:
        """A target met when ``value <= limit``."""
        ok = None if value is None else value <= limit
        return cls(label, value, f"≤ {limit:g}{suffix}", ok)

    @classmethod
    def at_least(cls, label: str, value: float | None, limit: float, suffix: str = "x") -> Target:
        """A target met when ``value >= limit``."""
        ok = None if value is None else value >= limit
        return cls(label, value, f"≥ {limit:g}{suffix}", ok)

    def to_json(self) -> dict[str, Any]:
        """The target as JSON-ready data."""
        return {"label": self.label, "value": self.value, "goal": self.goal, "ok": self.ok}


@dataclass
class Section:
    """One benchmark's results."""

    key: str
    title: str
    description: str
    params: dict[str, Any]
    rows: list[Row]
    ratio_label: str | None = None
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    lower_is_better: bool = False

    def row(self, contender: str, variant: str) -> Row | None:
        """The row of ``contender`` in ``variant``, if there is one."""
        for row in self.rows:
            if row.contender == contender and row.variant == variant:
                return row
        return None

    @property
    def errors(self) -> list[str]:
        """The contenders that crashed, as ``"name (variant): error"``."""
        return [f"{r.contender} ({r.variant}): {r.error}" for r in self.rows if r.error]

    def to_json(self) -> dict[str, Any]:
        """The section as JSON-ready data."""
        return {
            "title": self.title,
            "description": self.description,
            "params": self.params,
            "ratio_label": self.ratio_label,
            "lower_is_better": self.lower_is_better,
            "rows": [row.to_json() for row in self.rows],
            "targets": [target.to_json() for target in self.targets],
            "notes": self.notes,
            "errors": self.errors,
            "seconds": round(self.seconds, 2),
        }


def median_of(rows: list[Row], contender: str, variant: str) -> float | None:
    """The median of ``contender`` in ``variant`` among ``rows``; ``None`` if absent or skipped."""
    for row in rows:
        if row.contender == contender and row.variant == variant:
            return row.median
    return None


def ratio(value: float | None, reference: float | None) -> float | None:
    """``value / reference``, or ``None`` when either is missing (or the reference is 0)."""
    if value is None or not reference:
        return None
    return value / reference


# --------------------------------------------------------------------------- environment


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _our_version() -> str:
    try:
        return str(importlib.import_module("acquire_async._version").__version__)
    except Exception as exc:  # the package may be mid-edit; the report must still be written
        return f"unknown ({type(exc).__name__})"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment() -> dict[str, Any]:
    """The machine, the interpreter and the versions of every library involved."""
    usable: int | None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    versions = {"acquire_async": _our_version()}
    versions.update({name: _version(name) for name in LIBRARIES})
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "usable_cores": usable,
            "python": f"{platform.python_implementation()} {platform.python_version()}",
            "platform": platform.platform(),
        },
        "versions": versions,
    }


# --------------------------------------------------------------------------- output


def _number(value: float | None) -> str:
    """Three significant figures, with thousands separators for big numbers."""
    if value is None:
        return "-"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _table(header: list[str], lines: Iterable[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(cells) + " |" for cells in lines]
    return out


def _section_markdown(section: Section, smoke: bool) -> list[str]:
    better = "lower is better" if section.lower_is_better else "higher is better"
    out = [f"## {section.title}", "", f"{section.description}; {better}.", ""]
    params = ", ".join(f"{key}={value}" for key, value in section.params.items())
    out += [f"Parameters: {params}; took {section.seconds:.1f} s.", ""]
    extras: list[str] = []
    for row in section.rows:
        extras += [name for name in row.extra if name not in extras]
    header = ["Contender", "Variant", "Median", "Min-max", "n"]
    if section.ratio_label:
        header.append(section.ratio_label)
    header += [*extras, "Notes"]
    lines = []
    for row in section.rows:
        unit = f" {row.unit}"
        if row.samples:
            cells = [
                row.contender,
                row.variant,
                f"**{_number(row.median)}**{unit}",
                f"{_number(min(row.samples))}-{_number(max(row.samples))}",
                str(len(row.samples)),
            ]
        else:
            cells = [row.contender, row.variant, "skipped", "-", "0"]
        if section.ratio_label:
            cells.append("-" if row.ratio is None else f"{row.ratio:.2f}x")
        for name in extras:
            values = row.extra.get(name)
            cells.append(_number(statistics.median(values)) if values else "-")
        cells.append(row.error or row.note or "")
        lines.append(cells)
    out += _table(header, lines)
    if section.targets:
        out += ["", "Targets" + (" (smoke run: numbers are not meaningful)" if smoke else "") + ":"]
        for target in section.targets:
            mark = {True: "✅", False: "❌", None: "⏸"}[target.ok]
            value = "not measured" if target.value is None else f"{target.value:.3f}"
            out.append(f"- {mark} {target.label}: {value} (target {target.goal})")
    if section.notes:
        out += ["", *[f"- {note}" for note in section.notes]]
    return [*out, ""]


def to_markdown(meta: dict[str, Any], sections: list[Section]) -> str:
    """The whole report as Markdown: header, machine, versions, one table per section."""
    machine = meta["machine"]
    out = [
        "# acquire_async benchmarks",
        "",
        f"{meta['mode']} run, {meta['date']}, {meta['seconds']:.0f} s in all. "
        "Median of the samples, min-max spread; contenders alternate within each repeat.",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores ({machine['usable_cores']} usable), "
        f"{machine['python']}, {machine['platform']}.",
        "",
        "Versions: " + ", ".join(f"{name} {ver}" for name, ver in meta["versions"].items()) + ".",
        "",
    ]
    for section in sections:
        out += _section_markdown(section, meta["mode"] == "smoke")
    return "\n".join(out)


def to_json(meta: dict[str, Any], sections: list[Section]) -> dict[str, Any]:
    """The whole report as JSON-ready data: ``{"meta": …, "sections": {key: …}}``."""
    return {"meta": meta, "sections": {section.key: section.to_json() for section in sections}}


def write(directory: Path, meta: dict[str, Any], sections: list[Section]) -> tuple[Path, Path]:
    """Write ``latest.md`` and ``latest.json`` into ``directory``; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    markdown = directory / "latest.md"
    data = directory / "latest.json"
    markdown.write_text(to_markdown(meta, sections), encoding="utf-8")
    data.write_text(json.dumps(to_json(meta, sections), indent=2) + "\n", encoding="utf-8")
    return markdown, data
