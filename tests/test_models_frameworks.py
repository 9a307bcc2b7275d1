"""The models where users send them: `to_dict`, `msgspec.json.encode`, pydantic v2 and FastAPI
(routes annotated `-> Case`, `response_model=list[Case]`, a `Case` body, `/openapi.json`), and
`acquire_async` importing neither pydantic nor FastAPI."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from typing import Annotated, Any

import httpx
import msgspec
import pydantic
import pytest
from fastapi import Body, FastAPI

from acquire_async._protocol import decode_case
from acquire_async.models import (
    Agent,
    Case,
    CaseUser,
    ClosedCase,
    CloseResult,
    Contact,
    Message,
    UnknownUser,
)

WHEN = datetime(2021, 3, 24, 10, 44, 48, 538000, tzinfo=timezone.utc)
ISO = "2021-03-24T10:44:48.538000Z"
CASE = Case(
    id=1684,
    status="active",
    date_created=WHEN,
    meta={"queues": [15]},
    users=[
        CaseUser(type="user", user_id=25, status="joined", user=Agent(id=25, first_name="Ann")),
        CaseUser(type="contact", user_id=6, user=Contact(id=6, name="Bo"), case=Case(id=1684)),
    ],
    last_message=Message(id=8289, case_id=1684, message="Hi|translate", date_created=WHEN),
)
WIRE = {
    "id": 1684,
    "dateCreated": ISO,
    "status": "active",
    "meta": {"queues": [15]},
    "users": [
        {
            "type": "user",
            "userId": 25,
            "status": "joined",
            "user": {"type": "user", "id": 25, "firstName": "Ann"},
        },
        {
            "type": "contact",
            "userId": 6,
            "user": {"type": "contact", "id": 6, "name": "Bo"},
            "case": {"id": 1684},
        },
    ],
    "lastMessage": {
        "id": 8289,
        "caseId": 1684,
        "message": "Hi|translate",
        "dateCreated": ISO,
    },
}


def refs(node: Any) -> list[str]:
    """Every `$ref` in a JSON document."""
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in refs(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in refs(item)]
    return []


# ------------------------------------------------------------------ to_dict and msgspec


def test_to_dict_is_the_wire_shape_and_the_same_as_msgspec_json_encode() -> None:
    data = CASE.to_dict()
    assert data == WIRE
    assert json.loads(json.dumps(data)) == data  # JSON-ready: only builtins
    assert json.loads(msgspec.json.encode(CASE)) == data
    assert msgspec.json.decode(msgspec.json.encode(CASE), type=Case) == CASE


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (Agent(id=1, first_name="Ann"), {"type": "user", "id": 1, "firstName": "Ann"}),
        (Contact(id=2), {"type": "contact", "id": 2}),
        (CaseUser(user_id=4, date_last_assigned=WHEN), {"userId": 4, "dateLastAssigned": ISO}),
        (Message(id=5, sender_type="user"), {"id": 5, "senderType": "user"}),
        (ClosedCase(case_id=6, forever_closed=True), {"caseId": 6, "foreverClosed": True}),
        (
            CloseResult(closed=[ClosedCase(case_id=6)], user_id=1, user_type="user"),
            {"closed": [{"caseId": 6}], "userId": 1, "userType": "user"},
        ),
        (Case(id=7), {"id": 7}),
    ],
)  # fmt: skip
def test_every_model_has_to_dict(model: msgspec.Struct, expected: dict[str, Any]) -> None:
    assert model.to_dict() == expected  # type: ignore[attr-defined]
    assert json.loads(msgspec.json.encode(model)) == expected


# What Acquire sends for a case with participants of a type the SDK does not know: the client
# reads them as `UnknownUser`, and everything the models hand on gives that wire shape back.
BOT_WIRE = {
    "id": 1,
    "users": [
        {"type": "bot", "userId": 7, "user": {"type": "bot", "id": 7, "name": "Rob"}},
        {"type": "user", "userId": 8, "user": {"type": "user", "id": 8}, "case": {"id": 1}},
        {"type": "user", "case": {"id": 1, "users": [{"user": {"type": "bot", "id": 9}}]}},
    ],
    "lastMessage": {"id": 3, "senderType": "bot", "sender": {"type": "bot", "id": 7}},
}


def read_like_the_client(wire: dict[str, Any]) -> Case:
    return decode_case(200, {}, msgspec.json.encode({"data": wire}))


def test_to_dict_gives_the_wire_type_of_an_unknown_participant_not_the_private_tag() -> None:
    case = read_like_the_client(BOT_WIRE)
    assert isinstance(case.users[0].user, UnknownUser) and case.users[0].user.kind == "bot"
    assert isinstance(case.users[2].case.users[0].user, UnknownUser)  # type: ignore[union-attr]
    assert case.to_dict() == BOT_WIRE
    assert case.users[0].to_dict() == BOT_WIRE["users"][0]
    assert case.last_message.to_dict() == BOT_WIRE["lastMessage"]  # type: ignore[union-attr]
    assert UnknownUser(kind="bot", id=7).to_dict() == {"type": "bot", "id": 7}
    assert UnknownUser(id=7).to_dict() == {"id": 7}  # the server sent no `type`: none comes back
    # msgspec itself keeps writing the tag (it reads it back); the docstring says so.
    assert b"__acquire_async_unknown__" in msgspec.json.encode(case)
    assert msgspec.json.decode(msgspec.json.encode(case), type=Case) == case


def test_pydantic_reads_the_wire_shape_the_client_reads_and_round_trips() -> None:
    case = read_like_the_client(BOT_WIRE)
    given = json.loads(json.dumps(BOT_WIRE))
    adapter = pydantic.TypeAdapter(Case)
    assert adapter.validate_python(given) == case
    assert given == BOT_WIRE  # the lenient rewrite works on a copy, not on the caller's dict
    assert adapter.validate_json(json.dumps(BOT_WIRE)) == case
    assert adapter.dump_python(case) == BOT_WIRE
    assert adapter.validate_json(adapter.dump_json(case)) == case
    assert pydantic.TypeAdapter(CaseUser).validate_python(BOT_WIRE["users"][0]) == case.users[0]
    assert pydantic.TypeAdapter(Message).validate_python(BOT_WIRE["lastMessage"]) == (
        case.last_message
    )
    with pytest.raises(pydantic.ValidationError, match=r"not a valid Case: .*\$\.users\[0\]"):
        adapter.validate_python({"id": 1, "users": [{"user": {"type": "bot", "id": "x"}}]})


# ------------------------------------------------------------------ pydantic v2


def test_pydantic_keeps_an_instance_converts_the_wire_shape_and_dumps_to_dict() -> None:
    adapter = pydantic.TypeAdapter(Case)
    assert adapter.validate_python(CASE) is CASE
    assert adapter.validate_python(WIRE) == CASE
    assert adapter.validate_json(json.dumps(WIRE)) == CASE
    assert adapter.dump_python(CASE) == WIRE
    assert json.loads(adapter.dump_json(CASE)) == WIRE
    assert pydantic.TypeAdapter(list[CloseResult]).validate_python([{"userId": 1}]) == [
        CloseResult(user_id=1)
    ]


@pytest.mark.parametrize("bad", [{"status": "active"}, {"id": "x"}, {"id": 2**63}, [1], None])
def test_pydantic_reports_a_bad_case_as_a_validation_error(bad: Any) -> None:
    with pytest.raises(pydantic.ValidationError, match="not a valid Case"):
        pydantic.TypeAdapter(Case).validate_python(bad)


def test_a_model_inside_a_pydantic_model() -> None:
    class Joined(pydantic.BaseModel):
        case: Case
        by: str

    joined = Joined(case=CASE, by="api")
    assert joined.model_dump(mode="json") == {"case": WIRE, "by": "api"}
    assert Joined.model_validate_json(joined.model_dump_json()) == joined
    schema = Joined.model_json_schema()
    assert refs(schema) == ["#/$defs/Case"]  # one definition, under the class's name
    assert schema["$defs"]["Case"]["title"] == "Case"


def test_the_json_schema_is_inlined_with_the_recursion_cut() -> None:
    schema = pydantic.TypeAdapter(Case).json_schema()
    assert refs(schema) == [] and "$defs" not in schema
    assert schema["title"] == "Case" and schema["required"] == ["id"]
    assert schema["properties"]["id"] == {"type": "integer", "format": "int64"}
    participant = schema["properties"]["users"]["items"]
    assert participant["title"] == "CaseUser"
    assert {"title": "Case", "type": "object"} in participant["properties"]["case"]["anyOf"]
    users = participant["properties"]["user"]["anyOf"][0]["anyOf"]
    assert [alternative["title"] for alternative in users] == ["Agent", "Contact", "UnknownUser"]
    # An unknown participant is shown as `to_dict` writes it: any `type`, not the private tag.
    unknown = users[2]["properties"]
    assert unknown["type"] == {"type": "string"} and "kind" not in unknown
    assert "__acquire_async_unknown__" not in json.dumps(schema)
    # The description is the docstring's first paragraph: no code example in an OpenAPI page.
    message = schema["properties"]["lastMessage"]["anyOf"][0]
    assert "\n\n" not in message["description"] and "add_message" in message["description"]


# ------------------------------------------------------------------ FastAPI


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/annotated")
    async def annotated() -> Case:
        return CASE

    @app.get("/model", response_model=Case)
    async def model() -> Any:
        return CASE

    @app.get("/list", response_model=list[Case])
    async def many() -> Any:
        return [CASE, Case(id=2)]

    @app.get("/closed")
    async def closed() -> CloseResult:
        return CloseResult(closed=[ClosedCase(case_id=5)], user_id=1)

    @app.post("/echo")
    async def echo(case: Annotated[Case, Body()]) -> Case:
        return case

    @app.get("/bot")
    async def bot() -> Case:
        return read_like_the_client(BOT_WIRE)

    @app.get("/dict")
    async def as_dict():  # type: ignore[no-untyped-def]  # unannotated, on purpose
        return CASE.to_dict()

    return app


async def test_fastapi_routes_return_cases_and_openapi_renders() -> None:
    transport = httpx.ASGITransport(app=make_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
        for path in ("/annotated", "/model", "/dict"):
            response = await http.get(path)
            assert response.status_code == 200, path
            assert response.json() == WIRE, path
        assert (await http.get("/list")).json() == [WIRE, {"id": 2}]
        assert (await http.get("/closed")).json() == {"closed": [{"caseId": 5}], "userId": 1}

        echoed = await http.post("/echo", json=WIRE)
        assert echoed.status_code == 200 and echoed.json() == WIRE
        assert (await http.get("/bot")).json() == BOT_WIRE
        echoed = await http.post("/echo", json=BOT_WIRE)
        assert echoed.status_code == 200 and echoed.json() == BOT_WIRE
        refused = await http.post("/echo", json={"status": "active"})
        assert refused.status_code == 422
        assert "not a valid Case" in refused.json()["detail"][0]["msg"]

        openapi = await http.get("/openapi.json")
        assert openapi.status_code == 200
        document = openapi.json()

    def answer(path: str) -> Any:
        return document["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]

    case_ref = {"$ref": "#/components/schemas/Case"}
    assert answer("/annotated")["schema"] == answer("/model")["schema"] == case_ref
    assert answer("/list")["schema"]["items"] == case_ref
    assert answer("/closed")["schema"] == {"$ref": "#/components/schemas/CloseResult"}
    components = document["components"]["schemas"]
    assert components["Case"]["title"] == "Case"
    assert "lastMessage" in components["Case"]["properties"]
    for ref in refs(document):  # ours and FastAPI's own (HTTPValidationError): none dangles
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in components


def test_importing_acquire_async_loads_neither_pydantic_nor_fastapi() -> None:
    code = (
        "import sys, acquire_async, acquire_async.models, acquire_async.errors\n"
        "acquire_async.Case(id=1).to_dict()\n"
        "print(sorted(m for m in ('pydantic', 'pydantic_core', 'fastapi') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
