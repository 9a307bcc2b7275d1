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
        (UnknownUser(kind="bot"), {"type": "__acquire_async_unknown__", "kind": "bot"}),
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
