"""What the audit API takes and returns, as pydantic models for its OpenAPI document.

The handlers build their JSON as they always did; these models describe it, and the
fuzzing test (``tests/access/test_fuzz.py``) checks every response against them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from fedhub.openapi import QueryModel


class ChainQuery(QueryModel):
    tenant: str | None = Field(
        None, description="the chain to read: the caller's tenant; platform admins any, or platform"
    )


class EventsQuery(ChainQuery):
    format: Literal["json", "jsonl", "csv"] = Field(
        "json", description="json: a page; jsonl and csv: an export of every match"
    )
    actor: str | None = None
    action: str | None = Field(None, description="an action or its prefix (auth.)")
    severity: str | None = Field(None, description="at least this severity")
    result: str | None = None
    since: str | None = Field(None, description="ISO 8601 time, inclusive")
    until: str | None = Field(None, description="ISO 8601 time, exclusive")
    limit: int | None = Field(None, description="events per page (1-1000; json only)")
    cursor: str | None = Field(None, description="the previous page's next_cursor")


class AuditEvent(BaseModel):
    id: str
    tenant: str | None
    seq: int
    time: str
    action: str
    result: str
    severity: str
    actor: str | None
    target: str | None
    source_ip: str | None
    user_agent: str | None
    details: dict[str, Any]
    erased: list[str] = Field(description="personal fields erased on request (actor, target)")


class EventsPage(BaseModel):
    events: list[AuditEvent]
    next_cursor: str | None


class ChainReport(BaseModel):
    tenant: str
    records: int
    first_seq: int | None
    last_seq: int | None
    checkpoints: int
    problem: str | None
    bad_seq: int | None
    warnings: list[str]
    ok: bool


class Verification(BaseModel):
    ok: bool
    chains: list[ChainReport]


class Checkpoint(BaseModel):
    payload: str
    signature: str
    key_id: str | None


class Checkpoints(BaseModel):
    checkpoints: list[Checkpoint]


class Index(BaseModel):
    service: str
    api: str
