"""Benchmark 1: decoding a join payload (and a 50-case list) into Python objects.

Payloads: the seed join response (``tests/fixtures/join_chat_response.json``, re-encoded
without whitespace) and ``{"data": [case x 50]}`` built from its case.

Contenders, each decoding ``bytes`` as a client receives them:

- ours: ``acquire_async._protocol.decode_case(200, {}, body, codes=JOIN_CODES)`` for the join
  payload (envelope, error check and typed ``Case``), a ``msgspec.json.Decoder`` of
  ``{data: list[Case]}`` for the list;
- ``json.loads`` and ``orjson.loads`` to plain dicts (no validation, timestamps stay strings);
- pydantic v2 models of the same shape (``benchmarks._pydantic_models``);
- ``msgspec.json.decode`` untyped, to dicts.

Each sample times a calibrated number of back-to-back decodes (about ``decode_sample_seconds``
long) with the garbage collector on, as in a real client; contenders alternate within each
repeat. Reported: µs per payload, and each median against orjson's on the same payload.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from ._common import Config, join_payload, list_payload, missing_note, optional
from ._report import Row, Section, Target, median_of, ratio

__all__ = ["run"]

JOIN = "join (1 case)"
LIST = "list (50 cases)"
REFERENCE = "orjson.loads → dict"
OURS = "ours: msgspec Case"
PYDANTIC = "pydantic v2 models"
SEED_CASE_ID = 1684

Decoder = Callable[[bytes], Any]


def _ours() -> dict[str, Decoder]:
    from acquire_async._protocol import JOIN_CODES, decode_case

    from ._clients import envelope_decoder

    def decode_one(body: bytes) -> Any:
        return decode_case(200, {}, body, codes=JOIN_CODES)

    return {JOIN: decode_one, LIST: envelope_decoder(many=True).decode}


def _json() -> dict[str, Decoder]:
    return {JOIN: json.loads, LIST: json.loads}


def _orjson() -> dict[str, Decoder]:
    orjson: Any = optional("orjson")
    return {JOIN: orjson.loads, LIST: orjson.loads}


def _pydantic() -> dict[str, Decoder]:
    from ._pydantic_models import CaseListEnvelope, JoinEnvelope

    return {JOIN: JoinEnvelope.model_validate_json, LIST: CaseListEnvelope.model_validate_json}


def _msgspec_untyped() -> dict[str, Decoder]:
    import msgspec

    return {JOIN: msgspec.json.decode, LIST: msgspec.json.decode}


# name -> (libraries it needs, factory of its decoders by payload)
CONTENDERS: dict[str, tuple[tuple[str, ...], Callable[[], dict[str, Decoder]]]] = {
    OURS: (("msgspec",), _ours),
    "json.loads → dict": ((), _json),
    REFERENCE: (("orjson",), _orjson),
    PYDANTIC: (("pydantic",), _pydantic),
    "msgspec.json.decode → dict": (("msgspec",), _msgspec_untyped),
}


def _first_case_id(decoded: Any) -> int:
    """The id of the (first) case in any contender's result: a sanity check of the decode."""
    data = decoded["data"] if isinstance(decoded, dict) else getattr(decoded, "data", decoded)
    if isinstance(data, list):
        data = data[0]
    return int(data["id"] if isinstance(data, dict) else data.id)


def _calibrate(decode: Decoder, body: bytes, seconds: float) -> int:
    """How many decodes fill about ``seconds`` (which also warms the decoder up)."""
    loops = 1
    while True:
        start = time.perf_counter()
        for _ in range(loops):
            decode(body)
        elapsed = time.perf_counter() - start
        if elapsed >= min(seconds / 4, 0.05) or loops >= 1 << 24:
            return max(1, round(loops * seconds / elapsed)) if elapsed > 0 else loops
        loops *= 4


def _sample(decode: Decoder, body: bytes, loops: int) -> float:
    """µs per decode over ``loops`` back-to-back decodes."""
    start = time.perf_counter()
    for _ in range(loops):
        decode(body)
    return (time.perf_counter() - start) / loops * 1e6


def run(config: Config, log: Callable[[str], None]) -> Section:
    """Run the decode benchmark and return its section."""
    payloads = {JOIN: join_payload(), LIST: list_payload()}
    rows: list[Row] = []
    # (row, decoder, payload, loops) for every contender that can run here
    jobs: list[tuple[Row, Decoder, bytes, int]] = []
    for name, (requires, factory) in CONTENDERS.items():
        note = missing_note(*requires)
        decoders: dict[str, Decoder] = {}
        if note is None:
            try:
                decoders = factory()
            except ImportError as exc:
                note = f"skipped: {exc}"
        for variant, body in payloads.items():
            row = Row(name, variant, "µs", note=note)
            rows.append(row)
            if note is not None:
                continue
            decode = decoders[variant]
            if _first_case_id(decode(body)) != SEED_CASE_ID:
                row.error = "decoded the wrong case id"
                continue
            loops = _calibrate(decode, body, config.decode_sample_seconds)
            row.note = f"{loops:,} per sample"
            jobs.append((row, decode, body, loops))

    for repeat in range(config.repeats):
        shift = repeat % max(1, len(jobs))
        for row, decode, body, loops in jobs[shift:] + jobs[:shift]:
            row.samples.append(_sample(decode, body, loops))
        log(f"decode: repeat {repeat + 1}/{config.repeats} done")

    targets: list[Target] = []
    for variant in payloads:
        reference = median_of(rows, REFERENCE, variant)
        for row in rows:
            if row.variant == variant:
                row.ratio = ratio(row.median, reference)
        ours = median_of(rows, OURS, variant)
        targets.append(Target.at_most(f"ours / orjson, {variant}", ratio(ours, reference), 0.85))
        targets.append(
            Target.at_least(
                f"pydantic / ours (ours is Nx faster), {variant}",
                ratio(median_of(rows, PYDANTIC, variant), ours),
                4,
            )
        )
    return Section(
        key="decode",
        title="Decode",
        description="µs to decode one payload from bytes",
        params={
            "join_payload_bytes": len(payloads[JOIN]),
            "list_payload_bytes": len(payloads[LIST]),
            "repeats": config.repeats,
            "sample_seconds": config.decode_sample_seconds,
        },
        rows=rows,
        ratio_label="vs orjson",
        targets=targets,
        notes=[
            "json/orjson/untyped msgspec only build dicts (timestamps stay strings, nothing is "
            "validated); ours and pydantic build validated, typed objects with datetimes.",
            "The garbage collector stays on, as in a client that keeps what it decodes.",
        ],
        lower_is_better=True,
    )
