"""Stepping a run through its definition: the same code for real runs and dry runs, side effects behind :class:`Effects`.

A run advances until it must wait (a reply, a time, an HTTP call done outside the
database transaction) or ends. Each node executed leaves one :class:`StepRecord`.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from parley.automation.flows.definition import (
    AskNode,
    BranchNode,
    Condition,
    EndNode,
    FlowDefinition,
    HandoffNode,
    HttpNode,
    SendNode,
    SetNode,
    WaitNode,
)
from parley.automation.schemas import Reply, render

MAX_STEPS_PER_ADVANCE = 200


class Status:
    running = "running"  # an HTTP call is due (done by the worker, outside a transaction)
    waiting_reply = "waiting_reply"
    waiting_time = "waiting_time"
    finished = "finished"
    handed_off = "handed_off"
    failed = "failed"

    WAITING = frozenset({running, waiting_reply, waiting_time})
    DONE = frozenset({finished, handed_off, failed})


@dataclass
class RunState:
    node_id: str | None
    status: str
    variables: dict[str, Any]
    wake_at: datetime | None = None
    error: str | None = None


@dataclass
class StepRecord:
    node_id: str
    type: str
    detail: dict[str, Any] = field(default_factory=dict)


class Effects(Protocol):
    async def send(self, node_id: str, reply: Reply, variables: dict[str, Any]) -> dict[str, Any]: ...

    async def set_attribute(self, name: str, value: Any) -> None: ...

    async def add_tag(self, name: str) -> None: ...

    async def hand_off(self, queue_id: uuid.UUID, note: str | None) -> dict[str, Any]: ...

    async def contact_view(self) -> dict[str, Any]: ...


# --- conditions ---------------------------------------------------------------------------------


def _lookup(path: list[str], data: Any) -> Any:
    for part in path:
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def subject_value(subject: str, variables: dict[str, Any], contact: dict[str, Any]) -> Any:
    if subject == "message":
        return variables.get("message")
    head, _, rest = subject.partition(".")
    if head == "var":
        return _lookup(rest.split("."), variables)
    return _lookup(rest.split("."), contact)


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def holds(condition: Condition, variables: dict[str, Any], contact: dict[str, Any]) -> bool:
    value = subject_value(condition.subject, variables, contact)
    expected = condition.value
    op = condition.op
    if op == "exists":
        return (value is not None and value != "") == (expected is not False)
    if op == "eq":
        return value == expected or (value is not None and str(value) == str(expected))
    if op == "ne":
        return not (value == expected or (value is not None and str(value) == str(expected)))
    if op == "contains":
        if isinstance(value, list):
            return expected in value
        return value is not None and str(expected).casefold() in str(value).casefold()
    if op == "matches":
        return value is not None and re.search(str(expected), str(value)) is not None
    if op == "in":
        return isinstance(expected, list) and (value in expected or str(value) in [str(e) for e in expected])
    a, b = _number(value), _number(expected)
    if a is None or b is None:
        return False
    return a > b if op == "gt" else a < b


def map_response(mapping: dict[str, str], status: int, body: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, path in mapping.items():
        out[name] = status if path == "status" else _lookup([p for p in path.split(".") if p], body)
    return out


def render_value(value: Any, variables: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return render(value, variables)
    if isinstance(value, dict):
        return {k: render_value(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, variables) for v in value]
    return value


# --- stepping --------------------------------------------------------------------------------


def _goto(state: RunState, target: str | None) -> None:
    if target is None:
        state.node_id = None
        state.status = Status.finished
    else:
        state.node_id = target
        state.status = Status.running
    state.wake_at = None


async def advance(
    definition: FlowDefinition,
    state: RunState,
    effects: Effects,
    *,
    now: datetime,
    reply: str | None = None,
    http_result: dict[str, Any] | None = None,
    timed_out: bool = False,
) -> list[StepRecord]:
    """Moves the run as far as it can go now; returns the steps taken.

    ``reply`` answers a waiting ask; ``http_result`` (``{"ok", "status", "body", "error"}``)
    completes a pending HTTP node; ``timed_out`` ends an ask or a wait.
    """
    steps: list[StepRecord] = []
    if state.status in Status.DONE or state.node_id is None:
        return steps
    node: Any = definition.node(state.node_id)

    # First, whatever the run was waiting for.
    if state.status == Status.waiting_reply and isinstance(node, AskNode):
        if reply is not None:
            state.variables[node.save_as] = reply
            state.variables["message"] = reply
            steps.append(StepRecord(node.id, "reply", {"saved_as": node.save_as, "value": reply}))
            _goto(state, node.next)
        elif timed_out:
            steps.append(StepRecord(node.id, "timeout", {"after_s": node.timeout_s}))
            _goto(state, node.on_timeout)
        else:
            return steps
    elif state.status == Status.waiting_time and isinstance(node, WaitNode):
        if not timed_out:
            return steps
        steps.append(StepRecord(node.id, "waited", {"seconds": node.seconds}))
        _goto(state, node.next)
    elif state.status == Status.running and isinstance(node, HttpNode):
        if http_result is None:
            return steps
        if http_result.get("ok"):
            mapped = map_response(node.map, int(http_result.get("status") or 0), http_result.get("body"))
            state.variables.update(mapped)
            steps.append(
                StepRecord(
                    node.id,
                    "http",
                    {
                        "status": http_result.get("status"),
                        "mapped": mapped,
                        "attempts": http_result.get("attempts"),
                    },
                )
            )
            _goto(state, node.next)
        else:
            steps.append(
                StepRecord(
                    node.id,
                    "http_failed",
                    {
                        "error": http_result.get("error"),
                        "status": http_result.get("status"),
                        "attempts": http_result.get("attempts"),
                    },
                )
            )
            if node.on_error is None:
                state.status, state.error = Status.failed, str(http_result.get("error") or "HTTP call failed")
                return steps
            _goto(state, node.on_error)

    for _ in range(MAX_STEPS_PER_ADVANCE):
        if state.status != Status.running or state.node_id is None:
            return steps
        node = definition.node(state.node_id)
        if isinstance(node, SendNode):
            detail = await effects.send(node.id, node.reply, state.variables)
            steps.append(StepRecord(node.id, "send", detail))
            _goto(state, node.next)
        elif isinstance(node, AskNode):
            detail = await effects.send(node.id, node.reply, state.variables)
            steps.append(StepRecord(node.id, "ask", {**detail, "timeout_s": node.timeout_s}))
            state.status = Status.waiting_reply
            state.wake_at = now + timedelta(seconds=node.timeout_s)
            return steps
        elif isinstance(node, BranchNode):
            contact = await effects.contact_view()
            target, taken = node.default, "default"
            for index, branch in enumerate(node.branches):
                if all(holds(c, state.variables, contact) for c in branch.when):
                    target, taken = branch.next, f"branch {index + 1}"
                    break
            steps.append(StepRecord(node.id, "branch", {"taken": taken, "next": target}))
            _goto(state, target)
        elif isinstance(node, SetNode):
            applied: dict[str, Any] = {}
            for name, value in node.attributes.items():
                rendered = render_value(value, state.variables)
                await effects.set_attribute(name, rendered)
                applied[f"contact.{name}"] = rendered
            for name, value in node.variables.items():
                state.variables[name] = render_value(value, state.variables)
                applied[f"var.{name}"] = state.variables[name]
            for tag in node.tags:
                tag_name = render(tag, state.variables)
                await effects.add_tag(tag_name)
                applied.setdefault("tags", []).append(tag_name)
            steps.append(StepRecord(node.id, "set", applied))
            _goto(state, node.next)
        elif isinstance(node, HttpNode):
            # The call itself happens outside the database transaction (see the worker).
            state.wake_at = now
            return steps
        elif isinstance(node, HandoffNode):
            note = render(node.note, state.variables) if node.note else None
            detail = await effects.hand_off(node.queue_id, note)
            steps.append(
                StepRecord(node.id, "handoff", {"queue_id": str(node.queue_id), "note": note, **detail})
            )
            state.status, state.wake_at = Status.handed_off, None
            return steps
        elif isinstance(node, WaitNode):
            steps.append(StepRecord(node.id, "wait", {"seconds": node.seconds}))
            state.status = Status.waiting_time
            state.wake_at = now + timedelta(seconds=node.seconds)
            return steps
        elif isinstance(node, EndNode):
            steps.append(StepRecord(node.id, "end", {}))
            state.status, state.node_id, state.wake_at = Status.finished, None, None
            return steps
    state.status, state.error = (
        Status.failed,
        f"more than {MAX_STEPS_PER_ADVANCE} steps without waiting (a loop?)",
    )
    steps.append(StepRecord(state.node_id or "?", "error", {"error": state.error}))
    return steps


def http_request(node: HttpNode, variables: dict[str, Any]) -> dict[str, Any]:
    """The request an HTTP node makes with the run's variables filled in (what a step shows)."""
    return {
        "method": node.method,
        "url": render(node.url, variables),
        "headers": {k: render(v, variables) for k, v in node.headers.items()},
        "json": render_value(node.body, variables) if node.body is not None else None,
    }
