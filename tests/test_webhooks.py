"""acquire_async.webhooks: signatures, the published examples, hostile bodies, the secret.

The signature vectors come from the spec (``docs/webhooks.md`` cites them): the docs' own Node
reference code (``createHmac('SHA256', key).update(JSON.stringify(body)).digest('hex')``, Node
20) with key ``"string"``, the ``hmacKey`` of the published create example. The caveat vectors
were computed the same way, with ``JSON.stringify(JSON.parse(raw))``.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import json
import random
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest

from acquire_async import webhooks
from acquire_async._secrets import Secret
from acquire_async.errors import (
    InvalidPayloadError,
    InvalidSignatureError,
    PayloadTooLargeError,
    UnsupportedContentTypeError,
    WebhookError,
)
from acquire_async.webhooks import (
    DEFAULT_MAX_BODY,
    MAX_CONTAINERS,
    MAX_DEPTH,
    MAX_FALLBACK_BODY,
    SIGNATURE_HEADER,
    CaseInviteEvent,
    CaseJoinedEvent,
    CaseStatusEvent,
    ChatAcceptEvent,
    ChatCloseEvent,
    ChatMessageEvent,
    ChatStartEvent,
    EventName,
    MessageNewEvent,
    UnknownEvent,
    WebhookEvent,
    construct_event,
    parse_date,
    parse_event,
    sign,
    verify_signature,
)

EXAMPLES = Path(__file__).parent / "fixtures" / "webhook-examples"
CASE_STATUS = EXAMPLES / "case.status__2021-03-05_408cd38.json"
CHAT_ON_START = EXAMPLES / "CHAT_ON_START__2018-09-20_6c8df41.json"
KEY = "string"
COMPACT_SIG = "d521565853aa8d1c470832ea351f9ba0a5e4d5043d1a8f51528a22959e1bb473"
PRETTY_SIG = "692f615cf16320f3a1838fef428935f3b8d21bfdc513e23ef4754c7a5a8bb60a"
START_SIG = "ed9f843dbb0dd613d4653ec578c03c339de6eb046bfb3bd352931ce6fc4e749e"
SECRET = "wh-s3cret-7f1e9c2a4b"


def compact(raw: bytes) -> bytes:
    return json.dumps(json.loads(raw), separators=(",", ":"), ensure_ascii=False).encode()


def pretty(raw: bytes) -> bytes:
    return json.dumps(json.loads(raw), indent=2, ensure_ascii=False).encode()


# --------------------------------------------------------------------------- signatures


def test_the_published_vectors() -> None:
    raw = CASE_STATUS.read_bytes()
    assert len(compact(raw)) == 1375
    assert sign(compact(raw), KEY) == COMPACT_SIG
    assert sign(raw, KEY) == PRETTY_SIG
    assert sign(compact(CHAT_ON_START.read_bytes()), KEY) == START_SIG
    assert sign(compact(raw), KEY.encode()) == COMPACT_SIG
    assert sign(compact(raw), Secret(KEY)) == COMPACT_SIG


def test_compact_body_verifies_on_its_raw_bytes() -> None:
    body = compact(CASE_STATUS.read_bytes())
    verify_signature(body, COMPACT_SIG, KEY)
    event = construct_event(body, COMPACT_SIG, KEY, content_type="application/json")
    assert isinstance(event, CaseStatusEvent)
    assert (event.case_id, event.status) == (72, "closed")


def test_pretty_body_verifies_raw_against_its_own_signature() -> None:
    verify_signature(CASE_STATUS.read_bytes(), PRETTY_SIG, KEY)


def test_pretty_body_signed_over_its_compact_form_verifies_through_the_fallback() -> None:
    raw = CASE_STATUS.read_bytes()
    verify_signature(raw, COMPACT_SIG, KEY)
    event = construct_event(raw, COMPACT_SIG, KEY)
    assert (event.event, event.case_id, event.status) == ("case:status", 72, "closed")
    # Re-indented differently: still the same JSON.stringify form.
    verify_signature(pretty(raw), COMPACT_SIG, KEY)
    verify_signature(CHAT_ON_START.read_bytes(), START_SIG, KEY)


def test_the_compact_signature_does_not_fit_another_body() -> None:
    tree = json.loads(CASE_STATUS.read_bytes())
    tree["data"]["status"] = "active"
    with pytest.raises(InvalidSignatureError):
        verify_signature(json.dumps(tree, indent=1).encode(), COMPACT_SIG, KEY)
    with pytest.raises(InvalidSignatureError):
        verify_signature(compact(CASE_STATUS.read_bytes()), COMPACT_SIG, "another key")


@pytest.mark.parametrize(
    ("signature", "why"),
    [
        ("0" * 64, "does not match"),  # forged
        (COMPACT_SIG[:-1] + ("0" if COMPACT_SIG[-1] != "0" else "1"), "does not match"),
        (COMPACT_SIG[:63], "64 hex digits"),  # truncated
        (COMPACT_SIG[:32], "64 hex digits"),
        (COMPACT_SIG + "0", "64 hex digits"),
        (None, "missing"),
        ("", "empty"),
        ("   ", "empty"),
        ("z" * 64, "64 hex digits"),  # not hex
        ("é" * 64, "64 hex digits"),  # not ASCII: compare_digest would raise TypeError
        ("sha256=" + COMPACT_SIG, "64 hex digits"),  # no prefix is published
        (COMPACT_SIG[:-2] + "\x00\x00", "64 hex digits"),
    ],
)
def test_bad_signatures_are_rejected(signature: str | None, why: str) -> None:
    body = compact(CASE_STATUS.read_bytes())
    with pytest.raises(InvalidSignatureError, match=why) as caught:
        verify_signature(body, signature, KEY)
    assert caught.value.http_status == 401
    with pytest.raises(InvalidSignatureError):
        construct_event(body, signature, KEY)


def test_hex_is_case_insensitive_and_surrounding_blanks_are_ignored() -> None:
    body = compact(CASE_STATUS.read_bytes())
    verify_signature(body, COMPACT_SIG.upper(), KEY)
    verify_signature(body, f" {COMPACT_SIG}\t", KEY)
    verify_signature(CASE_STATUS.read_bytes(), COMPACT_SIG.upper(), KEY)  # fallback too
    assert sign(body, KEY) == sign(body, KEY).lower()


def test_secret_none_turns_verification_off_but_still_checks_types() -> None:
    body = compact(CASE_STATUS.read_bytes())
    verify_signature(body, None, None)
    verify_signature(body, "garbage", None)
    assert construct_event(body, None, None).case_id == 72
    with pytest.raises(TypeError, match="signature"):
        verify_signature(body, COMPACT_SIG.encode(), None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="signature"):
        construct_event(body, 5, None)  # type: ignore[arg-type]


@pytest.mark.parametrize("secret", ["", b""])
def test_an_empty_secret_is_a_value_error(secret: str | bytes) -> None:
    body = b'{"event":"x"}'
    for call in (
        lambda: sign(body, secret),
        lambda: verify_signature(body, COMPACT_SIG, secret),
        lambda: construct_event(body, COMPACT_SIG, secret),
        lambda: verify_signature(body, None, Secret(secret)),  # type: ignore[arg-type]
    ):
        with pytest.raises(ValueError, match="secret is empty"):
            call()


def test_wrong_types_are_type_errors_naming_the_parameter() -> None:
    body = compact(CASE_STATUS.read_bytes())
    with pytest.raises(TypeError, match="secret"):
        sign(body, 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="secret"):
        sign(body, None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="secret"):
        verify_signature(body, None, 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="body"):
        verify_signature(body.decode(), COMPACT_SIG, KEY)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="body"):
        parse_event(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="body"):
        sign("text", KEY)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="content_type"):
        parse_event(body, b"application/json")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="max_body"):
        parse_event(body, max_body="1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="max_body"):
        parse_event(body, max_body=True)
    with pytest.raises(ValueError, match="max_body"):
        construct_event(body, None, None, max_body=0)
    with pytest.raises(TypeError, match="text"):
        parse_date(5)  # type: ignore[arg-type]


def test_bytes_like_bodies_are_accepted() -> None:
    body = compact(CASE_STATUS.read_bytes())
    verify_signature(bytearray(body), COMPACT_SIG, KEY)
    assert construct_event(memoryview(body), COMPACT_SIG, KEY).case_id == 72


# The three caveats of the fallback, each: (the raw text a sender might hold, JSON.stringify of
# its parse as Node writes it, Node's signature of that). Computed with Node 20.
CAVEATS = {
    "integral float": (
        '{"event":"x:float","data":{"caseId":"1","score":1.0}}',
        '{"event":"x:float","data":{"caseId":"1","score":1}}',
        "0c7f618261187628170b1ab1d796f2b173f959cafd69f05409fcddd989832a91",
    ),
    "small exponent": (
        '{"event":"x:float","data":{"caseId":"1","score":1e-7}}',
        '{"event":"x:float","data":{"caseId":"1","score":1e-7}}',
        "1eaf42cf45343193b614cf7547366f20e169f281678efe27b541a37345070047",
    ),
    "integer above 2^53": (
        '{"event":"x:bigint","data":{"caseId":"1","n":9007199254740993}}',
        '{"event":"x:bigint","data":{"caseId":"1","n":9007199254740992}}',
        "8e37f4b027652eecb746130e335feadcd1d961455fa25fcba8ef050e0e14456f",
    ),
    "integer-like key": (
        '{"event":"x:keys","data":{"caseId":"1","10":"ten"}}',
        '{"event":"x:keys","data":{"10":"ten","caseId":"1"}}',
        "c814e2e57c5bde8b6a33d9d6e4c53316bb4e27b1e96f4d854714a06c05733529",
    ),
}


@pytest.mark.parametrize("caveat", list(CAVEATS))
def test_fallback_caveats_verify_raw_but_not_re_serialised(caveat: str) -> None:
    source, stringified, signature = CAVEATS[caveat]
    assert sign(stringified.encode(), KEY) == signature
    # Acquire sending JSON.stringify's own bytes: the raw path matches, whatever they hold.
    construct_event(stringified.encode(), signature, KEY)
    # The same JSON re-formatted: Python's compact form is not JSON.stringify's (documented).
    assert compact(source.encode()) != stringified.encode()
    with pytest.raises(InvalidSignatureError):
        verify_signature(pretty(source.encode()), signature, KEY)


def test_the_fallback_agrees_with_json_stringify_on_the_common_ground() -> None:
    # Escapes, non-ASCII, U+2028, emoji, -0, 2^53, 1e21 and literals: the same bytes as Node.
    source = (
        '{"event":"x:ok","data":{"caseId":"1","text":"é\\n\\u0001\\"\\\\/ \\u2028 😀",'
        '"n":-0,"f":2.5,"big":9007199254740992,"e":1e21,"arr":[true,false,null]}}'
    )
    signature = "3fa9160b075ca3a1ea305893dafb96abfdbf0ad45d7f39d3346d2de5c65b611f"
    verify_signature(pretty(source.encode()), signature, KEY)


def test_json_that_cannot_be_re_serialised_is_an_invalid_signature_not_a_crash() -> None:
    huge = b'{"event":"x","data":{"n":' + b"9" * 4299 + b"}}"
    with pytest.raises(InvalidSignatureError):
        verify_signature(huge, "0" * 64, KEY)
    assert parse_event(huge).event == "x"


# --------------------------------------------------------------------------- construct order


def test_construct_checks_size_then_type_then_signature_then_body() -> None:
    big = b"{" + b" " * 100 + b"}"
    with pytest.raises(PayloadTooLargeError) as too_large:
        construct_event(big, None, KEY, content_type="text/xml", max_body=50)
    assert too_large.value.http_status == 413
    with pytest.raises(UnsupportedContentTypeError) as wrong_type:
        construct_event(b"not json", None, KEY, content_type="text/xml")
    assert wrong_type.value.http_status == 415
    # An unsigned sender learns nothing about the body: 401, not 400.
    with pytest.raises(InvalidSignatureError):
        construct_event(b"not json", "0" * 64, KEY, content_type="application/json")
    with pytest.raises(InvalidPayloadError) as bad_body:
        construct_event(b"not json", sign(b"not json", KEY), KEY)
    assert bad_body.value.http_status == 400
    assert not isinstance(bad_body.value, (PayloadTooLargeError, UnsupportedContentTypeError))
    with pytest.raises(InvalidPayloadError):
        construct_event(b"[1]", None, None)


def test_the_size_cap_is_inclusive() -> None:
    body = b'{"event":"x"}'
    assert parse_event(body, max_body=len(body)).event == "x"
    with pytest.raises(PayloadTooLargeError, match="cap"):
        parse_event(body, max_body=len(body) - 1)
    with pytest.raises(PayloadTooLargeError):
        parse_event(b" " * (DEFAULT_MAX_BODY + 1))


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/JSON",
        "Application/Json; charset=utf-8",
        " application/json ",
    ],
)
def test_json_content_types_are_accepted(content_type: str) -> None:
    assert parse_event(b'{"event":"x"}', content_type).event == "x"


@pytest.mark.parametrize(
    "content_type",
    ["application/xml", "application/x-www-form-urlencoded", "text/json", "", "application/jsonx"],
)
def test_other_content_types_are_415(content_type: str) -> None:
    with pytest.raises(UnsupportedContentTypeError) as caught:
        parse_event(b'{"event":"x"}', content_type)
    assert caught.value.http_status == 415


# --------------------------------------------------------------------------- published examples


def _index() -> list[dict[str, str]]:
    with (EXAMPLES / "INDEX.tsv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


EXPECTED: dict[str, tuple[type[WebhookEvent], int, str | None]] = {
    "case.status__2021-03-05_408cd38.json": (CaseStatusEvent, 72, "closed"),
    "CHAT_ON_START__2018-09-20_6c8df41.json": (ChatStartEvent, 172, "pending"),
    "CHAT_ON_ACCEPT__2018-09-20_6c8df41.json": (ChatAcceptEvent, 32654, "active"),
    "CHAT_ON_MESSAGE__2018-09-20_6c8df41.json": (ChatMessageEvent, 104111, None),
    "CHAT_ON_MESSAGE__2018-09-20_6c8df41_format-page.json": (ChatMessageEvent, 58624, None),
    "CHAT_ON_CLOSE__2018-09-20_6c8df41.json": (ChatCloseEvent, 104111, "active"),
}


def test_the_fixtures_are_the_indexed_files() -> None:
    rows = _index()
    assert {row["file"] for row in rows} == {p.name for p in EXAMPLES.glob("*.json")}
    deliveries = {row["file"] for row in rows if row["event"] in {e.value for e in EventName}}
    assert deliveries == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_published_delivery_parses(name: str) -> None:
    cls, case_id, status = EXPECTED[name]
    raw = (EXAMPLES / name).read_bytes()
    for body in (raw, compact(raw)):
        event = parse_event(body, "application/JSON")
        assert type(event) is cls
        assert event.event == json.loads(raw)["event"]
        assert (event.case_id, event.status) == (case_id, status)
        assert event.fingerprint == hashlib.sha256(body).hexdigest()
        assert event.size == len(body)
        assert construct_event(body, sign(body, KEY), KEY) == event


@pytest.mark.parametrize("name", [row["file"] for row in _index() if "(" in row["event"]])
def test_published_non_deliveries_are_rejected(name: str) -> None:
    # The create request and the stored records hold event names but are not deliveries.
    with pytest.raises(InvalidPayloadError, match="no event name") as caught:
        parse_event((EXAMPLES / name).read_bytes())
    assert caught.value.path == "$.event"


def test_case_status_views() -> None:
    event = parse_event(CASE_STATUS.read_bytes())
    assert isinstance(event, CaseStatusEvent)
    assert event.data == json.loads(CASE_STATUS.read_bytes())["data"]
    assert event.fields == {}
    assert event.contact is not None
    assert (event.contact.id, event.contact.name, event.contact.email) == (
        5,
        "Jhon",
        "jhone@test.com",
    )
    assert [m.id for m in event.messages] == [323, 324, 325, 326, 327]
    first = event.messages[0]
    assert (first.channel, first.sender_id, first.sender_type, first.type, first.seen) == (
        "chat",
        5,
        "contact",
        "event",
        True,
    )
    assert first.message == "This thread has been reactivated."
    assert first.date_created == datetime(2021, 3, 3, 10, 19, 49, tzinfo=timezone.utc)
    assert first.date_created_raw == (
        "Wed Mar 03 2021 10:19:49 GMT+0000 (Coordinated Universal Time)"
    )
    assert event.messages[3].sender_type == "user"


def test_v1_views() -> None:
    start = parse_event(CHAT_ON_START.read_bytes())
    assert isinstance(start, ChatStartEvent)
    assert start.details is not None and start.details["name"] == "John"
    assert start.date_created == datetime(2017, 9, 20, 10, 17, 8)  # naive: no zone published
    assert start.date_created_raw == "2017-09-20 10:17:08"
    assert " id" in start.data and "event" not in start.data

    accept = parse_event((EXAMPLES / "CHAT_ON_ACCEPT__2018-09-20_6c8df41.json").read_bytes())
    assert isinstance(accept, ChatAcceptEvent)
    assert accept.user is not None and accept.user["name"] == "John Deo"
    assert accept.data["chat_wait_time"] == "null"  # "null" is text, never None

    close = parse_event((EXAMPLES / "CHAT_ON_CLOSE__2018-09-20_6c8df41.json").read_bytes())
    assert isinstance(close, ChatCloseEvent)
    assert close.by == "agent-15111"
    assert close.users is not None and set(close.users) == {"agent", "visitor"}
    assert close.date_picked == datetime(2018, 7, 23, 5, 17, 42)
    assert close.data["comments"] == "[]"


def test_v1_nested_json_sent_as_text_is_decoded() -> None:
    # As the docs print them: the object inside a string (the fixtures dropped the quotes).
    tree = json.loads((EXAMPLES / "CHAT_ON_MESSAGE__2018-09-20_6c8df41.json").read_bytes())
    tree["message"] = json.dumps(tree["message"], indent="\t")
    event = parse_event(json.dumps(tree).encode())
    assert isinstance(event, ChatMessageEvent)
    assert event.text == "sadsdd"
    assert event.message is not None and event.message["user"]["id"] == 15111
    assert isinstance(event.data["message"], str)  # data stays as received

    tree = json.loads((EXAMPLES / "CHAT_ON_CLOSE__2018-09-20_6c8df41.json").read_bytes())
    tree["users"] = json.dumps(tree["users"])
    event = parse_event(json.dumps(tree).encode())
    assert isinstance(event, ChatCloseEvent) and event.users is not None
    assert event.users["agent"]["name"] == "John Deo"

    for text in ("", "null", "{not json", "[]", '{"a": [1'):
        event = parse_event(json.dumps({"event": "CHAT_ON_MESSAGE", "message": text}).encode())
        assert isinstance(event, ChatMessageEvent) and event.message is None and event.text is None


def test_v1_flat_and_enveloped_bodies() -> None:
    flat = parse_event(b'{"id":"7","status":"active","event":"CHAT_ON_ACCEPT"}')
    assert flat.data == {"id": "7", "status": "active"}
    assert (flat.case_id, flat.status) == (7, "active")
    wrapped = parse_event(b'{"data":{"id":7},"event":"CHAT_ON_ACCEPT"}')
    assert wrapped.data == {"id": 7} and wrapped.case_id == 7


# --------------------------------------------------------------------------- assumed shapes


def test_invite_and_joined_assumed_shape() -> None:
    invite = parse_event(b'{"event":"user:case-invite","data":{"caseId":"1684","userId":"22"}}')
    assert isinstance(invite, CaseInviteEvent)
    assert (invite.case_id, invite.user_id, invite.status) == (1684, 22, None)
    joined = parse_event(b'{"event":"user:case-joined","data":{"caseId":1684}}')
    assert isinstance(joined, CaseJoinedEvent)
    assert (joined.case_id, joined.user_id) == (1684, None)
    empty = parse_event(b'{"event":"user:case-invite"}')
    assert isinstance(empty, CaseInviteEvent) and empty.case_id is None and empty.data == {}


def test_message_new_assumed_shapes() -> None:
    nested = parse_event(
        b'{"event":"case:message:new","data":{"caseId":"9","message":'
        b'{"id":"3","senderType":"contact","type":"message","message":"hi"}}}'
    )
    assert isinstance(nested, MessageNewEvent) and nested.message is not None
    assert (nested.case_id, nested.message.id, nested.message.message) == (9, 3, "hi")
    flat = parse_event(
        b'{"event":"case:message:new","data":{"caseId":"9","id":"3","message":"hi","seen":"no"}}'
    )
    assert isinstance(flat, MessageNewEvent) and flat.message is not None
    assert (flat.case_id, flat.message.id, flat.message.message, flat.message.seen) == (
        9,
        3,
        "hi",
        False,
    )
    inner = parse_event(b'{"event":"case:message:new","data":{"message":{"caseId":"4"}}}')
    assert inner.case_id == 4
    bare = parse_event(b'{"event":"case:message:new","data":{}}')
    assert isinstance(bare, MessageNewEvent) and bare.message is None and bare.case_id is None


def test_unknown_events_keep_raw_data() -> None:
    event = parse_event(b'{"event":"case:new","data":{"caseId":"9","x":[1,{"y":null}]}}')
    assert isinstance(event, UnknownEvent)
    assert (event.event, event.case_id, event.status) == ("case:new", 9, None)
    assert event.data == {"caseId": "9", "x": [1, {"y": None}]}
    # The shape of an unknown event is unknown: a caseId that is not an id is not an error.
    odd = parse_event(b'{"event":"case:new","data":{"caseId":{"id":1},"status":"x"}}')
    assert isinstance(odd, UnknownEvent) and odd.case_id is None and odd.status is None


# --------------------------------------------------------------------------- wrong shapes


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (b"[]", "$"),
        (b"null", "$"),
        (b'"case:status"', "$"),
        (b"{}", "$.event"),
        (b'{"event":null}', "$.event"),
        (b'{"event":5}', "$.event"),
        (b'{"event":""}', "$.event"),
        (b'{"event":"x","data":[1]}', "$.data"),
        (b'{"event":"x","data":"{}"}', "$.data"),
        (b'{"event":"case:status","data":{"caseId":[]}}', "$.data.caseId"),
        (b'{"event":"case:status","data":{"caseId":"abc"}}', "$.data.caseId"),
        (b'{"event":"case:status","data":{"caseId":"7.0"}}', "$.data.caseId"),
        (b'{"event":"case:status","data":{"caseId":true}}', "$.data.caseId"),
        (b'{"event":"case:status","data":{"caseId":7.5}}', "$.data.caseId"),
        (b'{"event":"case:status","data":{"caseId":"99999999999999999999"}}', "$.data.caseId"),
        (b'{"event":"case:status","data":{"caseId":9223372036854775808}}', "$.data.caseId"),
        (b'{"event":"case:status","data":{"status":5}}', "$.data.status"),
        (b'{"event":"user:case-invite","data":{"caseId":{}}}', "$.data.caseId"),
        (b'{"event":"case:message:new","data":{"caseId":"x"}}', "$.data.caseId"),
        (b'{"event":"CHAT_ON_START","data":{" id":"x"}}', "$.data[' id']"),
        (b'{"event":"CHAT_ON_ACCEPT","id":"x"}', "$.id"),
        (b'{"event":"CHAT_ON_ACCEPT","user":[]}', "$.user"),
        (b'{"event":"CHAT_ON_CLOSE","users":5}', "$.users"),
        (b'{"event":"CHAT_ON_CLOSE","date_picked":5}', "$.date_picked"),
    ],
)
def test_wrong_shapes_name_the_field(body: bytes, path: str) -> None:
    with pytest.raises(InvalidPayloadError) as caught:
        parse_event(body)
    assert caught.value.path == path
    assert caught.value.http_status == 400


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b'{"event":"x"', b'{"event":"x"} extra', b'{"event":"\xff"}', b"\xef"],
)
def test_malformed_json_is_a_payload_error(body: bytes) -> None:
    with pytest.raises(InvalidPayloadError, match="not valid JSON"):
        parse_event(body)


def test_null_reads_as_absent() -> None:
    event = parse_event(
        b'{"event":"case:status","data":{"caseId":null,"status":null,"contact":null,'
        b'"messages":null,"fields":null}}'
    )
    assert isinstance(event, CaseStatusEvent)
    assert (event.case_id, event.status, event.contact, event.messages) == (None, None, None, ())


def test_nesting_deeper_than_max_depth_is_refused() -> None:
    def nested(depth: int) -> bytes:  # the root object is level 1, data level 2
        arrays = depth - 2
        return b'{"event":"x","data":{"d":' + b"[" * arrays + b"]" * arrays + b"}}"

    assert parse_event(nested(MAX_DEPTH)).event == "x"
    with pytest.raises(InvalidPayloadError, match="nested"):
        parse_event(nested(MAX_DEPTH + 1))
    for depth in (900, 5_000, MAX_CONTAINERS - 2):
        with pytest.raises(InvalidPayloadError, match="nested"):
            parse_event(nested(depth))
    with pytest.raises(InvalidPayloadError, match="objects and arrays"):
        parse_event(nested(200_000))  # refused by its count, before it is parsed
    with pytest.raises(InvalidSignatureError):
        verify_signature(nested(5_000), "0" * 64, KEY)


def test_huge_numbers() -> None:
    for literal in (b"1e400", b"-1e400", b"9" * 5000):
        with pytest.raises(InvalidPayloadError):
            parse_event(b'{"event":"x","data":{"n":' + literal + b"}}")
    event = parse_event(b'{"event":"x","data":{"caseId":123456789012345678901234567890}}')
    assert event.case_id is None  # not a 64-bit id; unknown event: ignored


def test_events_are_frozen_values() -> None:
    event = parse_event(CASE_STATUS.read_bytes())
    with pytest.raises(AttributeError):
        event.case_id = 1  # type: ignore[misc]
    assert event == parse_event(CASE_STATUS.read_bytes())


# --------------------------------------------------------------------------- dates


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Wed Mar 03 2021 10:19:49 GMT+0000 (Coordinated Universal Time)",
            datetime(2021, 3, 3, 10, 19, 49, tzinfo=timezone.utc),
        ),
        (
            "Thu Mar 04 2021 01:19:49 GMT+0530 (India Standard Time)",
            datetime(2021, 3, 4, 1, 19, 49, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        ),
        (
            "Wed Mar 03 2021 02:19:49 GMT-0800",
            datetime(2021, 3, 3, 2, 19, 49, tzinfo=timezone(timedelta(hours=-8))),
        ),
        ("2021-03-25T12:26:08.150Z", datetime(2021, 3, 25, 12, 26, 8, 150000, timezone.utc)),
        (
            "2021-03-25T12:26:08+02:00",
            datetime(2021, 3, 25, 12, 26, 8, tzinfo=timezone(timedelta(hours=2))),
        ),
        ("2018-07-23 05:17:40", datetime(2018, 7, 23, 5, 17, 40)),
        ("2018-07-23", datetime(2018, 7, 23)),
        ("", None),
        ("null", None),
        ("yesterday", None),
        ("Wed Feb 30 2021 10:19:49 GMT+0000", None),
        ("Wed Foo 03 2021 10:19:49 GMT+0000", None),
        ("2021-13-01 00:00:00", None),
        ("9" * 1000, None),
    ],
)
def test_parse_date(text: str, expected: datetime | None) -> None:
    assert parse_date(text) == expected


def test_an_unreadable_date_keeps_its_text() -> None:
    event = parse_event(b'{"event":"case:status","data":{"messages":[{"dateCreated":"sometime"}]}}')
    assert isinstance(event, CaseStatusEvent)
    assert (event.messages[0].date_created, event.messages[0].date_created_raw) == (
        None,
        "sometime",
    )


# --------------------------------------------------------------------------- bounded cost


class _Counting:
    """Stands in for the module's decoder (or ``_compact``) and counts the calls."""

    def __init__(self, wrapped: Any) -> None:
        self.wrapped = wrapped
        self.calls = 0

    def decode(self, body: bytes) -> Any:
        self.calls += 1
        return self.wrapped.decode(body)

    def __call__(self, tree: Any) -> Any:
        self.calls += 1
        return self.wrapped(tree)


def _padded(size: int) -> bytes:
    """A small valid delivery padded with a string to exactly ``size`` bytes."""
    head, tail = b'{"event":"case:status","data":{"caseId":"7","pad":"', b'"}}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def _lists(count: int) -> bytes:
    """A delivery that opens exactly ``count`` objects and arrays (``count - 3`` empty lists)."""
    return b'{"event":"x","data":{"a":[' + b",".join([b"[]"] * (count - 3)) + b"]}}"


def test_the_fallback_is_only_tried_under_its_caps(monkeypatch: pytest.MonkeyPatch) -> None:
    decoder = _Counting(webhooks._DECODER)
    dumps = _Counting(webhooks._compact)
    monkeypatch.setattr(webhooks, "_DECODER", decoder)
    monkeypatch.setattr(webhooks, "_compact", dumps)

    def unsigned(body: bytes) -> tuple[int, int]:
        decoder.calls = dumps.calls = 0
        for call in (verify_signature, construct_event):
            with pytest.raises(InvalidSignatureError):
                call(body, "0" * 64, KEY)
        return decoder.calls, dumps.calls

    # Under both caps the fallback runs: one parse and one re-serialisation per call.
    assert unsigned(_padded(MAX_FALLBACK_BODY)) == (2, 2)
    assert unsigned(_lists(MAX_CONTAINERS)) == (2, 2)
    # Over either cap an unsigned body costs one HMAC: nothing is parsed or re-serialised.
    assert unsigned(_padded(MAX_FALLBACK_BODY + 1)) == (0, 0)
    assert unsigned(_lists(MAX_CONTAINERS + 1)) == (0, 0)
    # The review's 1 MiB body of [] (350,000 lists): a 401, whatever its shape, not a 400.
    flood = b'{"event":"x","data":{"a":[' + b"[]," * 349_000 + b"[]]}}"
    assert len(flood) <= DEFAULT_MAX_BODY
    assert unsigned(flood) == (0, 0)


def test_a_body_over_the_container_cap_is_a_payload_error_once_signed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decoder = _Counting(webhooks._DECODER)
    monkeypatch.setattr(webhooks, "_DECODER", decoder)
    over, at = _lists(MAX_CONTAINERS + 1), _lists(MAX_CONTAINERS)
    for secret in (KEY, None):
        with pytest.raises(InvalidPayloadError, match="objects and arrays") as caught:
            construct_event(over, sign(over, KEY), secret)
        assert caught.value.http_status == 400
    with pytest.raises(InvalidPayloadError, match="objects and arrays"):
        parse_event(over)
    assert decoder.calls == 0  # refused before it was parsed
    # The cap is inclusive.
    assert construct_event(at, sign(at, KEY), KEY).event == "x"
    assert parse_event(at).size == len(at)


def test_a_big_pretty_body_must_match_raw() -> None:
    # Over MAX_FALLBACK_BODY only the raw bytes are compared: signed over its compact form,
    # a pretty body is a 401; signed over its own bytes, it verifies.
    tree = json.loads(_padded(MAX_FALLBACK_BODY))
    big = json.dumps(tree, indent=2).encode()
    assert len(big) > MAX_FALLBACK_BODY
    with pytest.raises(InvalidSignatureError):
        verify_signature(big, sign(compact(big), KEY), KEY)
    assert construct_event(big, sign(big, KEY), KEY).case_id == 7


# --------------------------------------------------------------------------- fingerprint, size


def test_the_fingerprint_is_of_the_bytes_the_signature_covers() -> None:
    signed = compact(CASE_STATUS.read_bytes())
    original = construct_event(signed, COMPACT_SIG, KEY)
    assert original.fingerprint == hashlib.sha256(signed).hexdigest()
    # Replays of the same signed delivery, re-formatted: each verifies through the fallback
    # and gets the original's fingerprint, so the bot's de-duplication sees them.
    replays = [
        CASE_STATUS.read_bytes(),  # pretty, as published
        pretty(signed),
        signed[:-1] + b"   }",  # trailing blanks
        signed.replace(b'"caseId":"72"', b'"caseId":"\\u0037\\u0032"'),  # escapes
        signed.replace(b'"caseId":"72"', b'"caseId":"9","caseId":"72"'),  # duplicate key
    ]
    for body in replays:
        assert body != signed
        event = construct_event(body, COMPACT_SIG, KEY)
        assert event == msgspec.structs.replace(original, size=len(body))
        assert event.fingerprint == original.fingerprint
    small = b'{"event":"user:case-invite","data":{"caseId":"5"}}'
    escaped = b'{"event":"user:case-invite","data":{"caseId":"\\u0035"}}'
    assert (
        construct_event(escaped, sign(small, KEY), KEY).fingerprint
        == hashlib.sha256(small).hexdigest()
    )
    # Signed over its own (pretty) bytes: the raw path, the raw bytes' fingerprint.
    raw = CASE_STATUS.read_bytes()
    assert construct_event(raw, PRETTY_SIG, KEY).fingerprint == hashlib.sha256(raw).hexdigest()
    # Nothing verified (secret=None, parse_event): the raw bytes' fingerprint.
    assert construct_event(raw, None, None).fingerprint == hashlib.sha256(raw).hexdigest()
    assert parse_event(raw).fingerprint == hashlib.sha256(raw).hexdigest()


def test_every_event_has_the_size_of_its_raw_body() -> None:
    assert "size" in WebhookEvent.__struct_fields__
    bodies = [
        *(compact((EXAMPLES / name).read_bytes()) for name in EXPECTED),
        b'{"event":"user:case-invite","data":{"caseId":"1684","userId":"22"}}',
        b'{"event":"user:case-joined","data":{"caseId":"1684"}}',
        b'{"event":"case:message:new","data":{"caseId":"9","message":"hi"}}',
        b'{"event":"case:new","data":{}}',
    ]
    classes = set()
    for body in bodies:
        for event in (parse_event(body), construct_event(body, sign(body, KEY), KEY)):
            assert event.size == len(body)
            classes.add(type(event))
    assert len(classes) == 9
    # Through the fallback: the raw body's size, not the compact form's.
    raw = CASE_STATUS.read_bytes()
    assert construct_event(raw, COMPACT_SIG, KEY).size == len(raw) == 1991


# --------------------------------------------------------------------------- ids, leniency


@pytest.mark.parametrize("value", ['"-5"', "-5", "0", '"0"', "-0", '"-0"', '"00"', "-1.0"])
def test_case_ids_must_be_positive(value: str) -> None:
    for event in ("case:status", "user:case-invite", "case:message:new"):
        with pytest.raises(InvalidPayloadError) as caught:
            parse_event(f'{{"event":"{event}","data":{{"caseId":{value}}}}}'.encode())
        assert caught.value.path == "$.data.caseId"
    with pytest.raises(InvalidPayloadError) as caught:
        parse_event(f'{{"event":"CHAT_ON_ACCEPT","id":{value}}}'.encode())
    assert caught.value.path == "$.id"
    # Where an id is read leniently, it reads as None.
    unknown = parse_event(f'{{"event":"case:new","data":{{"caseId":{value}}}}}'.encode())
    assert unknown.case_id is None


def test_the_id_range_is_1_to_2_63_minus_1() -> None:
    for value, expected in (
        ('"1"', 1),
        ("1", 1),
        ('"007"', 7),
        ('"9223372036854775807"', 2**63 - 1),
        ("9223372036854775807", 2**63 - 1),
    ):
        body = f'{{"event":"user:case-invite","data":{{"caseId":{value}}}}}'.encode()
        assert parse_event(body).case_id == expected


_LENIENT = [
    # (data of a case:status delivery, what its views read); caseId and status stay strict.
    ({"messages": [{"id": "1", "senderId": ""}]}, {"messages": [(1, None, None)]}),
    ({"messages": [{"id": "5f3a9c", "senderId": "5"}]}, {"messages": [(None, 5, None)]}),
    ({"messages": [{"id": "0", "message": {"text": "hi"}}]}, {"messages": [(None, None, None)]}),
    ({"messages": [{"id": "2", "message": "hi"}, "x", 5, None]}, {"messages": [(2, None, "hi")]}),
    ({"messages": {"0": {"id": "1"}}}, {"messages": []}),
    ({"messages": "none"}, {"messages": []}),
    ({"contact": {"id": "abc", "fields": {"name": "A"}}}, {"contact": (None, {"name": "A"})}),
    ({"contact": {"id": "5", "fields": []}}, {"contact": (5, None)}),
    ({"contact": "5"}, {"contact": None}),
    ({"fields": []}, {"fields": None}),
]  # fmt: skip


@pytest.mark.parametrize(("extra", "expected"), _LENIENT)
def test_odd_transcript_contact_and_fields_values_read_as_none(
    extra: dict[str, Any], expected: dict[str, Any]
) -> None:
    data = {"caseId": "72", "status": "pending", **extra}
    body = json.dumps({"event": "case:status", "data": data}).encode()
    event = parse_event(body)
    assert isinstance(event, CaseStatusEvent)
    assert (event.case_id, event.status, event.data) == (72, "pending", data)  # raw kept
    if "messages" in expected:
        got = [(m.id, m.sender_id, m.message) for m in event.messages]
        assert got == expected["messages"]
    if "contact" in expected:
        contact = event.contact
        got_contact = None if contact is None else (contact.id, contact.fields)
        assert got_contact == expected["contact"]
    if "fields" in expected:
        assert event.fields is None


def test_odd_message_fields_read_as_none() -> None:
    event = parse_event(
        b'{"event":"case:status","data":{"messages":[{"id":7,"channel":1,"senderType":[],'
        b'"type":{},"seen":"maybe","dateCreated":1614766789000}]}}'
    )
    assert isinstance(event, CaseStatusEvent)
    (message,) = event.messages
    assert message == webhooks.WebhookMessage(id=7)


def test_odd_assumed_fields_read_as_none() -> None:
    invite = parse_event(b'{"event":"user:case-invite","data":{"caseId":"72","userId":"bot-3"}}')
    assert isinstance(invite, CaseInviteEvent)
    assert (invite.case_id, invite.user_id, invite.data["userId"]) == (72, None, "bot-3")
    joined = parse_event(b'{"event":"user:case-joined","data":{"caseId":"72","userId":{}}}')
    assert isinstance(joined, CaseJoinedEvent) and (joined.case_id, joined.user_id) == (72, None)
    for message in (b"5", b"[]", b"true"):
        new = parse_event(
            b'{"event":"case:message:new","data":{"caseId":"9","message":%s}}' % message
        )
        assert isinstance(new, MessageNewEvent) and (new.case_id, new.message) == (9, None)
    inner = parse_event(
        b'{"event":"case:message:new","data":{"message":{"caseId":"x","id":"y","message":1}}}'
    )
    assert isinstance(inner, MessageNewEvent) and inner.case_id is None
    assert inner.message == webhooks.WebhookMessage()


# --------------------------------------------------------------------------- repr


def test_rich_sees_what_repr_shows_and_no_more() -> None:
    event = parse_event(CASE_STATUS.read_bytes())
    assert isinstance(event, CaseStatusEvent) and event.contact is not None
    personal = ["jhone@test.com", "Jhon", "reactivated"]
    # msgspec gives every Struct a __rich_repr__ listing every field; rich.pretty uses it.
    assert dict(event.__rich_repr__()) == {
        "event": "case:status",
        "case_id": 72,
        "status": "closed",
        "fingerprint": event.fingerprint[:12],
    }
    assert dict(event.contact.__rich_repr__()) == {"id": event.contact.id}
    message = event.messages[0]
    assert "message" not in dict(message.__rich_repr__())
    for value in (event, event.contact, message):
        for text in (repr(value), str(value)):
            assert not [word for word in personal if word in text], text
    from rich.pretty import pretty_repr

    for shown in map(pretty_repr, (event, event.contact, message, event.messages)):
        assert not [word for word in personal if word in shown], shown


# --------------------------------------------------------------------------- fuzz


def _random_value(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if depth > 4 or roll < 0.5:
        return rng.choice(
            [
                None,
                True,
                False,
                0,
                -1,
                2**53 + 1,
                2**63,
                -(2**64),
                10**30,
                1.5,
                1e300,
                -0.0,
                "",
                "72",
                "-3",
                "abc",
                "null",
                "{}",
                "[]",
                '{"msg": 1}',
                "Wed Mar 03 2021 10:19:49 GMT+0000",
                "2018-07-23 05:17:40",
                "\u2028\x00é",
                rng.choice(list(EventName)).value,
            ]
        )
    if roll < 0.75:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["caseId", "userId", "id", " id", "status", "message", "messages", "contact",
            "fields", "users", "user", "details", "data", "event", "dateCreated", "seen",
            "senderId", "date_created", "date_picked", "by", "x"]  # fmt: skip
    return {rng.choice(keys): _random_value(rng, depth + 1) for _ in range(rng.randrange(5))}


def _mutate(rng: random.Random, tree: Any) -> Any:
    """Replace one random node of ``tree`` (a copy) with a random value."""
    tree = json.loads(json.dumps(tree))
    node = tree
    for _ in range(rng.randrange(1, 6)):
        if isinstance(node, dict) and node:
            key = rng.choice(list(node))
            if rng.random() < 0.4 or not isinstance(node[key], (dict, list)):
                node[key] = _random_value(rng, 2)
                break
            node = node[key]
        elif isinstance(node, list) and node:
            index = rng.randrange(len(node))
            if rng.random() < 0.4 or not isinstance(node[index], (dict, list)):
                node[index] = _random_value(rng, 2)
                break
            node = node[index]
    return tree


def _fuzz_bodies(seed: int, count: int) -> list[bytes]:
    rng = random.Random(seed)
    seeds = [json.loads((EXAMPLES / name).read_bytes()) for name in EXPECTED]
    seeds += [
        {"event": "user:case-invite", "data": {"caseId": "1684", "userId": "22"}},
        {"event": "case:message:new", "data": {"caseId": "9", "message": {"id": "1"}}},
    ]
    bodies: list[bytes] = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.1:
            body = rng.randbytes(rng.randrange(64))
        elif kind < 0.2:  # byte-level damage to a real delivery
            body = bytearray(compact(json.dumps(rng.choice(seeds)).encode()))
            for _ in range(rng.randrange(1, 4)):
                body[rng.randrange(len(body))] = rng.randrange(256)
            body = bytes(body)
        elif kind < 0.3:
            opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
            depth = rng.choice([MAX_DEPTH - 2, MAX_DEPTH, MAX_DEPTH + 5, 3000])
            body = b'{"event":"x","data":{"d":' + opener * depth + closer * depth + b"}}"
        elif kind < 0.35:
            digits = rng.choice([20, 400, 4400])
            body = b'{"event":"case:status","data":{"caseId":' + b"7" * digits + b"}}"
        elif kind < 0.55:
            body = json.dumps(_random_value(rng, 0)).encode()
        elif kind < 0.7:
            tree = {"event": rng.choice(list(EventName)).value, "data": _random_value(rng, 1)}
            flat = _random_value(rng, 3)
            if rng.random() < 0.5 and isinstance(flat, dict):
                tree = {**flat, "event": tree["event"]}  # a v1-like flat body
            body = json.dumps(tree).encode()
        else:
            indent = rng.choice([None, 2])
            body = json.dumps(_mutate(rng, rng.choice(seeds)), indent=indent).encode()
        bodies.append(body)
    return bodies


def _check(event: WebhookEvent, body: bytes) -> None:
    assert isinstance(event, WebhookEvent)
    assert isinstance(event.event, str) and event.event
    assert event.case_id is None or isinstance(event.case_id, int)
    assert event.status is None or isinstance(event.status, str)
    assert isinstance(event.data, dict)
    assert event.fingerprint == hashlib.sha256(body).hexdigest()
    assert event.size == len(body)
    repr(event)


def _outcome(call: Any, *args: Any, **kwargs: Any) -> WebhookEvent | WebhookError:
    """The event, or the WebhookError; any other exception fails the test."""
    try:
        return call(*args, **kwargs)  # type: ignore[no-any-return]
    except WebhookError as exc:
        return exc


def test_fuzzed_bodies_raise_only_webhook_errors() -> None:
    content_types = [None, "application/json", "text/plain", "application/json; x=1"]
    outcomes: list[tuple[bytes, WebhookEvent | WebhookError]] = []
    for index, body in enumerate(_fuzz_bodies(seed=1234, count=3000)):
        outcomes.append((body, _outcome(parse_event, body)))
        outcomes.append((body, _outcome(construct_event, body, sign(body, KEY), KEY)))
        outcomes.append(
            (
                body,
                _outcome(
                    construct_event,
                    body,
                    "0" * 64,
                    KEY,
                    content_type=content_types[index % 4],
                    max_body=4096,
                ),
            )
        )
    errors = [outcome for _, outcome in outcomes if isinstance(outcome, WebhookError)]
    for body, outcome in outcomes:
        if not isinstance(outcome, WebhookError):
            _check(outcome, body)
    assert {error.http_status for error in errors} == {400, 401, 413, 415}
    assert all(str(error) for error in errors)
    # Both ways out were taken often: the fuzz reaches past the first check.
    assert len(errors) > 1000 and len(outcomes) - len(errors) > 1000


# --------------------------------------------------------------------------- the secret


def _texts_of(error: BaseException) -> str:
    return " ".join([str(error), repr(error), *map(repr, error.args), repr(vars(error))])


def test_the_secret_never_appears_in_errors_reprs_or_traceback_frames() -> None:
    leaky = [
        json.dumps({"event": "case:status", "data": {"caseId": SECRET}}).encode(),
        json.dumps({"event": SECRET, "data": {"x": SECRET}}).encode(),
        json.dumps({"event": "case:status", "data": {"status": [SECRET]}}).encode(),
        b'{"event":"' + SECRET.encode() + b'", "data":',  # truncated JSON
        SECRET.encode(),
        json.dumps({"event": "x", "data": {"d": [[[[[SECRET]]]]] * 1}}).encode() + b"[" * 70,
    ]
    signatures: list[str | None] = [None, "", SECRET, SECRET * 4, "0" * 64]
    errors: list[BaseException] = []
    events: list[WebhookEvent] = []
    for body in leaky:
        for secret in (SECRET, SECRET.encode(), Secret(SECRET.encode())):
            for signature in [*signatures, sign(body, SECRET)]:
                for content_type in (None, f"text/{SECRET}", SECRET):
                    try:
                        events.append(
                            construct_event(body, signature, secret, content_type=content_type)
                        )
                    except WebhookError as exc:
                        errors.append(exc)
    assert errors and events
    for error in errors:
        assert SECRET not in _texts_of(error)
    for event in events:
        assert SECRET not in repr(event).replace(f"event={SECRET!r}", "")
        assert SECRET not in str(event).replace(f"event={SECRET!r}", "")
    # The bodies that carry the secret in data: the repr leaves data out.
    event = construct_event(leaky[0].replace(SECRET.encode(), b"7"), None, None)
    body = json.dumps({"event": "case:new", "data": {"note": SECRET}}).encode()
    event = construct_event(body, sign(body, SECRET), SECRET)
    assert SECRET not in repr(event) and SECRET not in str(event)
    contact = parse_event(CASE_STATUS.read_bytes())
    assert "jhone@test.com" not in repr(contact) and "Jhon" not in repr(contact)


def _our_frames_locals(error: BaseException) -> list[Any]:
    values: list[Any] = []
    traceback = error.__traceback__
    while traceback is not None:
        if traceback.tb_frame.f_code.co_filename == webhooks.__file__:
            values.extend(traceback.tb_frame.f_locals.values())
        traceback = traceback.tb_next
    return values


def test_no_traceback_frame_holds_the_plain_secret() -> None:
    # Error trackers record the locals of every frame of a traceback (see _secrets.py).
    body = compact(CASE_STATUS.read_bytes())
    cases: list[dict[str, Any]] = [
        {"body": body, "signature": None},
        {"body": body, "signature": "xyz"},
        {"body": body, "signature": "0" * 64},
        {"body": CASE_STATUS.read_bytes(), "signature": "0" * 64},
        {"body": b"not json", "signature": sign(b"not json", SECRET)},
        {"body": body, "signature": None, "content_type": "text/xml"},
        {"body": body, "signature": None, "max_body": 10},
    ]
    seen = 0
    for secret in (SECRET, SECRET.encode(), Secret(SECRET.encode())):
        for case in cases:
            for call in (construct_event, verify_signature):
                kwargs = {k: v for k, v in case.items() if k in ("content_type", "max_body")}
                if call is verify_signature and kwargs:
                    continue
                try:
                    call(case["body"], case["signature"], secret, **kwargs)  # type: ignore[operator]
                except WebhookError as exc:
                    seen += 1
                    values = _our_frames_locals(exc)
                    assert values
                    texts = [v for v in values if isinstance(v, (str, bytes))]
                    assert SECRET not in texts and SECRET.encode() not in texts
                    # Held ones may be there (their repr is masked); the caller's is dropped.
                    assert not [v for v in values if v is secret]
                    assert SECRET not in " ".join(map(repr, values))
    # verify_signature takes no content_type/max_body, and passes the signed non-JSON body.
    assert seen == 3 * 11


def test_a_str_body_leaves_no_plain_secret_in_any_frame() -> None:
    # A receiver that passes ``await request.text()`` gets a TypeError: the frames of its
    # traceback (error trackers record their locals) must not hold the secret passed beside.
    for secret in (SECRET, SECRET.encode()):
        calls: list[tuple[Any, tuple[Any, ...]]] = [
            (sign, (secret,)),
            (verify_signature, ("0" * 64, secret)),
            (construct_event, ("0" * 64, secret)),
        ]
        for call, args in calls:
            with pytest.raises(TypeError, match="body"):
                try:
                    call('{"event":"x"}', *args)
                except TypeError as exc:
                    values = _our_frames_locals(exc)
                    assert values, call
                    assert not [v for v in values if v is secret or v == secret], call
                    assert SECRET not in " ".join(map(repr, values)), call
                    raise


# --------------------------------------------------------------------------- the module


def test_the_module_is_pure_and_documented() -> None:
    tree = ast.parse(Path(webhooks.__file__).read_text(encoding="utf-8"))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 0
    }
    assert not imported & {"aiohttp", "asyncio", "socket", "httpx", "starlette"}, imported
    assert SIGNATURE_HEADER == "x-acquire-signature"
    assert DEFAULT_MAX_BODY == 1_048_576
    for name in webhooks.__all__:
        value = getattr(webhooks, name)
        if callable(value):
            assert value.__doc__ and "Example" in value.__doc__, name
    assert "ASSUMED" in (CaseInviteEvent.__doc__ or "")
    assert "ASSUMED" in (CaseJoinedEvent.__doc__ or "")
    assert "ASSUMED" in (MessageNewEvent.__doc__ or "")
    assert sys.modules["acquire_async.webhooks"] is webhooks
