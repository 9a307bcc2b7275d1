"""The emulator's state: one store of cases that every route reads and changes.

`CaseStore` keeps the cases (wire-shape dicts), the messages each case received, the agent
the API key belongs to, and the id counters. Its operations are synchronous, so each request's
change is one atomic step on the event loop.

Every change of a case's status made here (a new case, a join, a close…) is reported to
`on_status`: the emulator delivers `case:status` webhooks from it.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from ._cases import (
    agent_user,
    apply_close,
    apply_join,
    apply_reject,
    close,
    is_joined_by,
    iso,
    make_waiting_case,
)

__all__ = ["CaseStore"]


_NEW = object()  # the status "before" a new case: never equal to one


def _int_id(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class CaseStore:
    """The cases, the messages they received, and the key's agent; see `FakeAcquire`.

    Example:
        ```python
        store = CaseStore(agent_id=25, agent_name="Bot", clock=lambda: now, first_case_id=1)
        case = store.add_case()
        store.add_message(case, text="Hello", type="message", channel=None, meta=None)
        len(store.messages(case["id"]))  # 1
        ```
    """

    def __init__(
        self,
        *,
        agent_id: int,
        agent_name: str,
        clock: Callable[[], datetime],
        first_case_id: int,
    ) -> None:
        self.cases: dict[int, dict[str, Any]] = {}
        self.agent_id = agent_id
        self.agent: dict[str, Any] = agent_user(agent_id, agent_name)
        self.clock = clock
        self._first_case_id = first_case_id
        self._messages: dict[int, list[dict[str, Any]]] = {}
        # The case's own last message when it was stored: the start of its transcript.
        self._first: dict[int, dict[str, Any]] = {}
        self.on_status: Callable[[dict[str, Any]], object] | None = None
        """Called with the case after each change of its status (and for each new case)."""
        self._next_participant_id = 1
        self._next_message_id = 1

    # ------------------------------------------------------------------ set-up and inspection

    def add_case(
        self, case: Mapping[str, Any] | None = None, *, status: str | None = None
    ) -> dict[str, Any]:
        """Store a copy of `case` (or a new waiting case); return the stored dict."""
        if case is None:
            next_id = max(self.cases, default=self._first_case_id - 1) + 1
            stored = make_waiting_case(next_id, now=self.clock(), status=status)
        else:
            if "id" not in case and isinstance(case.get("data"), Mapping):
                case = case["data"]
            stored = copy.deepcopy(dict(case))
        case_id = stored.get("id")
        if isinstance(case_id, bool) or not isinstance(case_id, int) or case_id <= 0:
            raise ValueError(f"a case needs a positive int 'id' (got {case_id!r})")
        if case_id in self.cases:
            raise ValueError(f"case {case_id} is already in the store")
        self.cases[case_id] = stored
        for entry in stored.get("users") or ():
            if isinstance(entry, dict) and (entry_id := _int_id(entry.get("id"))) is not None:
                self._next_participant_id = max(self._next_participant_id, entry_id + 1)
        self._see_message(stored)
        last = stored.get("lastMessage")
        if isinstance(last, dict):
            self._first[case_id] = copy.deepcopy(last)
        self._notify(stored)
        return stored

    def messages(self, case_id: int) -> list[dict[str, Any]]:
        """The messages added to the stored case `case_id`, oldest first (`KeyError` if no
        such case)."""
        if case_id not in self.cases:
            raise KeyError(case_id)
        return list(self._messages.get(case_id, ()))

    def transcript(self, case_id: int) -> list[dict[str, Any]]:
        """The case's messages as the store knows them, oldest first: its last message when
        it was stored, then those added through add-message (`KeyError` if no such case)."""
        first = self._first.get(case_id)
        return ([first] if first is not None else []) + self.messages(case_id)

    def is_joined(self, case_id: int) -> bool:
        """Whether the key's agent has joined the stored case `case_id`."""
        return is_joined_by(self.cases[case_id], self.agent_id)

    def close_case(self, case_id: int) -> dict[str, Any]:
        """Close a stored case, as someone else would (`closedBy: null`); return it."""
        case = self.cases[case_id]
        before = case.get("status")
        close(case, now=self.clock())
        self._notify(case, before)
        return case

    def mark_joined(self, case_id: int) -> dict[str, Any]:
        """Join the key's agent to an open stored case without a request; return it."""
        case = self.cases[case_id]
        if case.get("status") == "closed":
            raise ValueError(f"case {case_id} is closed")
        if not is_joined_by(case, self.agent_id):
            self.join(case)
        return case

    def pre_join(self, already_joined: float | Iterable[int]) -> None:
        """Mark the cases `already_joined` names (ids, or a fraction of the open ones)."""
        if isinstance(already_joined, bool):
            raise TypeError("already_joined must be a fraction or case ids, not a bool")
        if isinstance(already_joined, (int, float)):
            if not 0.0 <= already_joined <= 1.0:
                raise ValueError(
                    f"already_joined must be a fraction in [0, 1] or ids: {already_joined!r}"
                )
            open_ids = sorted(i for i, c in self.cases.items() if c.get("status") != "closed")
            count = round(already_joined * len(open_ids))
            ids: Iterable[int] = sorted(random.Random(0).sample(open_ids, count))
        else:
            ids = already_joined
        for case_id in ids:
            if case_id not in self.cases:
                raise ValueError(f"already_joined names case {case_id}, which is not in the store")
            self.mark_joined(case_id)

    # ------------------------------------------------------------------ the operations

    def join(self, case: dict[str, Any]) -> dict[str, Any]:
        """Join the key's agent to `case` (open, not joined yet); return the response data."""
        before = case.get("status")
        data = apply_join(
            case, agent=self.agent, participant_id=self._participant_id(), now=self.clock()
        )
        self._notify(case, before)
        return data

    def reject(self, case: dict[str, Any]) -> bool:
        """Reject `case` (open) for the key's agent; return whether it changed."""
        before = case.get("status")
        changed = apply_reject(
            case, agent=self.agent, participant_id=self._participant_id(), now=self.clock()
        )
        self._notify(case, before)
        return changed

    def close(
        self, case: dict[str, Any], *, closing_state: str, leave_only: bool
    ) -> tuple[bool, bool, bool]:
        """Close (or leave) `case`: `(forever_closed, left_user, changed)`."""
        before = case.get("status")
        outcome = apply_close(
            case,
            agent_id=self.agent_id,
            closing_state=closing_state,
            leave_only=leave_only,
            now=self.clock(),
        )
        self._notify(case, before)
        return outcome

    def add_message(
        self,
        case: dict[str, Any],
        *,
        text: str,
        type: str,
        channel: str | None,
        meta: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        """Add a message from the key's agent to `case` (open); return the stored message.

        It is recorded (`messages`) and becomes the case's `lastMessage` (a copy), in
        the published `lastMessage` shape. `dateCreated` has whole seconds, as published.
        """
        case_id = case["id"]
        last = case.get("lastMessage")
        own_last = _int_id(last.get("id")) if isinstance(last, dict) else None
        message_id = max(self._next_message_id, (own_last or 0) + 1)
        self._next_message_id = message_id + 1
        message = {
            "id": message_id,
            "caseId": case_id,
            "channel": channel if channel is not None else case.get("channel") or "chat",
            "senderId": self.agent_id,
            "senderType": "user",
            "type": type,
            "message": text,
            "dateCreated": iso(self.clock(), whole_seconds=True),
            "dateUpdated": None,
            "seen": "no",
            "meta": copy.deepcopy(dict(meta)) if meta is not None else {},
        }
        self._messages.setdefault(case_id, []).append(message)
        case["lastMessage"] = copy.deepcopy(message)
        return message

    def _notify(self, case: dict[str, Any], before: object = _NEW) -> None:
        """Report `case` to `on_status` if its status is not `before` (a new case: always)."""
        if self.on_status is not None and case.get("status") != before:
            self.on_status(case)

    # ------------------------------------------------------------------ ids

    def _participant_id(self) -> int:
        participant_id = self._next_participant_id
        self._next_participant_id += 1
        return participant_id

    def _see_message(self, case: Mapping[str, Any]) -> None:
        last = case.get("lastMessage")
        if isinstance(last, dict) and (message_id := _int_id(last.get("id"))) is not None:
            self._next_message_id = max(self._next_message_id, message_id + 1)
