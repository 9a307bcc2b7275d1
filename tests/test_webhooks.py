"""acquire_async.webhooks: signatures, the published examples, hostile bodies, the secret."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from acquire_async import webhooks
from acquire_async.errors import InvalidSignatureError
from acquire_async.webhooks import CaseStatusEvent, construct_event, sign

EXAMPLES = Path(__file__).parent / "fixtures" / "webhook-examples"
CASE_STATUS = EXAMPLES / "case.status__2021-03-05_408cd38.json"
KEY = "string"  # the hmacKey of the published create example, used by the spec's vectors
COMPACT_SIG = "d521565853aa8d1c470832ea351f9ba0a5e4d5043d1a8f51528a22959e1bb473"
PRETTY_SIG = "692f615cf16320f3a1838fef428935f3b8d21bfdc513e23ef4754c7a5a8bb60a"


def compact(raw: bytes) -> bytes:
    return json.dumps(json.loads(raw), separators=(",", ":"), ensure_ascii=False).encode()


def test_published_vectors() -> None:
    pretty = CASE_STATUS.read_bytes()
    assert sign(compact(pretty), KEY) == COMPACT_SIG
    assert sign(pretty, KEY) == PRETTY_SIG
    event = construct_event(pretty, COMPACT_SIG, KEY)
    assert isinstance(event, CaseStatusEvent)
    assert (event.case_id, event.status) == (72, "closed")
    with pytest.raises(InvalidSignatureError):
        webhooks.verify_signature(pretty, "0" * 64, KEY)
