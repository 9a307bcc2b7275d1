"""Benchmark 6: reading one signed webhook delivery (``acquire_async.webhooks``).

Payload: the published ``case:status`` delivery (``tests/fixtures/webhook-examples/``), in
two forms, signed the way the docs' Node code signs (HMAC-SHA256 of ``JSON.stringify``):

- compact (1,375 bytes): the ``JSON.stringify`` text itself, so the raw bytes match;
- pretty (1,991 bytes): the file as published, signed over its compact form, so the raw
  compare fails and the fallback parses and re-serialises the body before it matches (it is
  under ``MAX_FALLBACK_BODY`` and ``MAX_CONTAINERS``, so the fallback is tried).

Contenders, each taking the body ``bytes`` and the header as a receiver gets them:

- ``construct_event`` (verify + parse into a typed event), the receiver's one call;
- ``verify_signature`` alone;
- ``parse_event`` alone (no signature);
- a floor: ``hmac.new(...).hexdigest()`` + ``compare_digest`` + ``json.loads`` to a dict,
  which checks nothing else and builds no typed event.

Each sample times a calibrated number of back-to-back calls (about ``decode_sample_seconds``
long); contenders alternate within each repeat. Reported: µs per event, and each median
against the floor on the same form.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

from ._common import REPO_ROOT, Config
from ._report import Row, Section, median_of, ratio
from .decode import _calibrate, _sample

__all__ = ["run"]

FIXTURE = (
    REPO_ROOT / "tests" / "fixtures" / "webhook-examples" / "case.status__2021-03-05_408cd38.json"
)
SECRET = "string"  # the hmacKey of the published create example
COMPACT = "compact (raw match)"
PRETTY = "pretty (fallback)"
OURS = "construct_event (verify + parse)"
REFERENCE = "floor: hmac + json.loads → dict"
CASE_ID = 72

Reader = Callable[[bytes], Any]


def payloads() -> dict[str, tuple[bytes, str]]:
    """Both forms of the published delivery, each with the signature Acquire would send."""
    from acquire_async.webhooks import sign

    pretty = FIXTURE.read_bytes()
    compact = json.dumps(json.loads(pretty), separators=(",", ":"), ensure_ascii=False).encode()
    signature = sign(compact, SECRET)
    return {COMPACT: (compact, signature), PRETTY: (pretty, signature)}


def _contenders(signature: str) -> dict[str, Reader]:
    from acquire_async.webhooks import construct_event, parse_event, verify_signature

    key = SECRET.encode()
    given = signature.encode()

    def ours(body: bytes) -> Any:
        return construct_event(body, signature, SECRET, content_type="application/json")

    def verify(body: bytes) -> Any:
        verify_signature(body, signature, SECRET)
        return {"data": {"caseId": str(CASE_ID)}}

    def floor(body: bytes) -> Any:
        # What a hand-written receiver does on the happy path: no fallback, no checks.
        if not hmac.compare_digest(hmac.new(key, body, hashlib.sha256).hexdigest().encode(), given):
            return {"data": {"caseId": "0"}}
        return json.loads(body)

    return {
        OURS: ours,
        "verify_signature": verify,
        "parse_event (no signature)": parse_event,
        REFERENCE: floor,
    }


def _case_id(result: Any) -> int:
    if isinstance(result, dict):
        return int(result["data"]["caseId"])
    return int(result.case_id)


def run(config: Config, log: Callable[[str], None]) -> Section:
    """Run the webhooks benchmark and return its section."""
    forms = payloads()
    rows: list[Row] = []
    jobs: list[tuple[Row, Reader, bytes, int]] = []
    for variant, (body, signature) in forms.items():
        for name, read in _contenders(signature).items():
            row = Row(name, variant, "µs")
            rows.append(row)
            try:
                if _case_id(read(body)) != CASE_ID:
                    # The floor has no fallback: the pretty form does not verify for it.
                    row.note = "does not verify this form (no fallback)"
                    continue
            except Exception as exc:  # a crash is reported, not raised: the run goes on
                row.error = f"{type(exc).__name__}: {exc}"
                continue
            loops = _calibrate(read, body, config.decode_sample_seconds)
            row.note = f"{loops:,} per sample"
            jobs.append((row, read, body, loops))

    for repeat in range(config.repeats):
        shift = repeat % max(1, len(jobs))
        for row, read, body, loops in jobs[shift:] + jobs[:shift]:
            row.samples.append(_sample(read, body, loops))
        log(f"webhooks: repeat {repeat + 1}/{config.repeats} done")

    for variant in forms:
        reference = median_of(rows, REFERENCE, variant) or median_of(rows, REFERENCE, COMPACT)
        for row in rows:
            if row.variant == variant:
                row.ratio = ratio(row.median, reference)
    return Section(
        key="webhooks",
        title="Webhooks",
        description="µs to verify and/or parse the published case:status delivery",
        params={
            "compact_bytes": len(forms[COMPACT][0]),
            "pretty_bytes": len(forms[PRETTY][0]),
            "repeats": config.repeats,
            "sample_seconds": config.decode_sample_seconds,
        },
        rows=rows,
        ratio_label="vs floor (compact)",
        notes=[
            "construct_event also checks the size and content type, counts the body's "
            "brackets (the container cap), verifies in constant time, hashes the signed "
            "bytes (the fingerprint), coerces ids and parses 5 JavaScript dates.",
            "The pretty form verifies through the fallback: one failed HMAC, a bracket count, "
            "a parse, a compact json.dumps and a second HMAC; its fingerprint is the compact "
            "form's. The floor has no fallback; the pretty rows are compared with its compact "
            "median.",
            "Figures on a shared 2-core machine vary by 2x between runs: compare the ratios.",
        ],
        lower_is_better=True,
    )
