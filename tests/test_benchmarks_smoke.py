"""``python -m benchmarks --smoke`` runs end to end, so the benchmark code cannot rot.

It never asserts a timing: the smoke sizes are far too small to measure anything. It checks
that every section ran, that no contender crashed, and that the results are numbers.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("decode", "throughput", "latency", "memory", "scaleout", "webhooks", "bot")
# Contenders that need nothing beyond the SDK's own dependencies: they must always have numbers.
ALWAYS = {
    "decode": "json.loads → dict",
    "throughput": "raw aiohttp",
    "latency": "raw aiohttp",
    "memory": "raw aiohttp",
    "scaleout": "LocalThrottle, no limit",
    "webhooks": "construct_event (verify + parse)",
    "bot": "bare aiohttp.web",
}


@pytest.mark.slow
def test_smoke_run_writes_every_section(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--output-dir", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "# acquire_async benchmarks" in done.stdout
    assert (tmp_path / "latest.md").read_text(encoding="utf-8").startswith("# acquire_async")

    report = json.loads((tmp_path / "latest.json").read_text(encoding="utf-8"))
    assert report["meta"]["mode"] == "smoke"
    assert report["meta"]["versions"]["aiohttp"]
    assert set(report["sections"]) == set(SECTIONS)
    for key, section in report["sections"].items():
        assert section["errors"] == [], key
        measured = [row for row in section["rows"] if row["samples"]]
        assert measured, f"{key}: no contender produced a result"
        for row in measured:
            for stat in ("median", "min", "max"):
                value = row[stat]
                assert isinstance(value, (int, float)), (key, row["contender"], stat)
                assert math.isfinite(value), (key, row["contender"], stat)
        for row in section["rows"]:
            assert row["samples"] or row["note"], f"{key}: {row['contender']} skipped silently"
            # A failed join costs a round trip like a success, and would hide a broken client.
            assert not row["extra"].get("failed joins"), (key, row["contender"])
        assert any(row["contender"] == ALWAYS[key] for row in measured), key
    if os.environ.get("ACQUIRE_REQUIRE_REDIS") == "1":
        # CI has redis-server and the redis extra: the Redis rows must run there, not skip.
        rows = report["sections"]["scaleout"]["rows"]
        skipped = [row["contender"] for row in rows if not row["samples"]]
        assert skipped == [], skipped


def test_only_rejects_an_unknown_section() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--only", "decode,nope"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "nope" in done.stderr


_WITHOUT_REDIS = (
    "import sys\n"
    "from benchmarks import __main__ as bench, scaleout\n"
    "scaleout._redis_binary = lambda: None  # as on a machine without redis-server\n"
    "sys.exit(bench.main(['--smoke', '--only', 'scaleout', '--output-dir', sys.argv[1]]))\n"
)


@pytest.mark.slow
def test_scaleout_without_redis_server_skips_its_redis_rows(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_REDIS, str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    section = json.loads((tmp_path / "latest.json").read_text(encoding="utf-8"))["sections"][
        "scaleout"
    ]
    assert section["errors"] == []
    for row in section["rows"]:
        if row["contender"] == ALWAYS["scaleout"]:
            assert row["samples"], row["variant"]
        else:
            assert not row["samples"], (row["contender"], row["variant"])
            assert "redis-server not found" in row["note"], row["contender"]
