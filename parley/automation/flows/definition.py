"""A flow's definition: nodes in JSON or YAML, validated (types, references, reachability) before it is stored."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from parley.automation.schemas import Reply


class _Node(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")
    title: str | None = Field(default=None, max_length=200)

    def targets(self) -> list[str]:
        return [t for t in (getattr(self, "next", None),) if t]


class SendNode(_Node):
    type: Literal["send"]
    reply: Reply
    next: str | None = None


class AskNode(_Node):
    type: Literal["ask"]
    reply: Reply
    save_as: str = Field(min_length=1, max_length=64)
    timeout_s: int = Field(default=600, ge=1, le=7 * 86400)
    on_timeout: str | None = None
    next: str | None = None

    def targets(self) -> list[str]:
        return [t for t in (self.next, self.on_timeout) if t]


Operator = Literal["eq", "ne", "contains", "matches", "gt", "lt", "exists", "in"]


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # message | var.<name> | contact.<field> | contact.attributes.<name>
    subject: str = Field(min_length=1, max_length=200, pattern=r"^(message|var\.\S+|contact\.\S+)$")
    op: Operator = "eq"
    value: Any = None


class Branch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    when: list[Condition] = Field(min_length=1)  # all must hold
    next: str


class BranchNode(_Node):
    type: Literal["branch"]
    branches: list[Branch] = Field(min_length=1)
    default: str | None = None

    def targets(self) -> list[str]:
        return [b.next for b in self.branches] + ([self.default] if self.default else [])


class SetNode(_Node):
    type: Literal["set"]
    attributes: dict[str, Any] = Field(default_factory=dict)  # on the contact; values may use {{var}}
    variables: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    next: str | None = None

    @model_validator(mode="after")
    def _something(self) -> SetNode:
        if not (self.attributes or self.variables or self.tags):
            raise ValueError("a set node sets at least one attribute, variable or tag")
        return self


class HttpNode(_Node):
    type: Literal["http"]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str = Field(min_length=1, max_length=2000, pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict)
    body: Any = None  # JSON, with {{var}} placeholders in its strings
    timeout_s: float = Field(default=5.0, gt=0, le=30)
    retries: int = Field(default=2, ge=0, le=5)
    # variable name → dotted path in the JSON answer ("data.model", "items.0.id"); "status" is the HTTP status.
    map: dict[str, str] = Field(default_factory=dict)
    next: str | None = None
    on_error: str | None = None
    sample_response: Any = None  # what a dry run pretends the service answered

    def targets(self) -> list[str]:
        return [t for t in (self.next, self.on_error) if t]


class HandoffNode(_Node):
    type: Literal["handoff"]
    queue_id: uuid.UUID
    note: str | None = Field(default=None, max_length=1000)


class WaitNode(_Node):
    type: Literal["wait"]
    seconds: int = Field(ge=1, le=30 * 86400)
    next: str | None = None


class EndNode(_Node):
    type: Literal["end"]


Node = Annotated[
    SendNode | AskNode | BranchNode | SetNode | HttpNode | HandoffNode | WaitNode | EndNode,
    Field(discriminator="type"),
]


class FlowDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: str
    nodes: list[Node] = Field(min_length=1, max_length=500)

    @model_validator(mode="after")
    def _references(self) -> FlowDefinition:
        ids = [n.id for n in self.nodes]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"node ids must be unique: {', '.join(dupes)}")
        known = set(ids)
        if self.start not in known:
            raise ValueError(f"start node {self.start!r} does not exist")
        for node in self.nodes:
            for target in node.targets():
                if target not in known:
                    raise ValueError(f"node {node.id!r} points to {target!r}, which does not exist")
        return self

    def node(self, node_id: str) -> Any:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)


class DefinitionError(ValueError):
    """A definition that does not parse or validate, with messages an editor can show."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def parse_definition(
    source: str | dict[str, Any], fmt: Literal["json", "yaml", "auto"] = "auto"
) -> FlowDefinition:
    if isinstance(source, dict):
        data: Any = source
    else:
        try:
            if fmt == "json" or (fmt == "auto" and source.lstrip().startswith("{")):
                data = json.loads(source)
            else:
                data = yaml.safe_load(source)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise DefinitionError([f"cannot parse: {exc}"]) from exc
    if not isinstance(data, dict):
        raise DefinitionError(["a flow definition is an object with 'start' and 'nodes'"])
    try:
        return FlowDefinition.model_validate(data)
    except ValidationError as exc:
        messages = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            messages.append(f"{where}: {err['msg']}" if where else str(err["msg"]))
        raise DefinitionError(messages) from exc


def dump_definition(definition: FlowDefinition | dict[str, Any], fmt: Literal["json", "yaml"]) -> str:
    data = (
        definition.model_dump(mode="json", exclude_none=True)
        if isinstance(definition, FlowDefinition)
        else definition
    )
    if fmt == "json":
        return json.dumps(data, ensure_ascii=False, indent=2)
    return str(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
