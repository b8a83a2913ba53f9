"""What the experiments API takes and returns, as pydantic models for its OpenAPI document.

The handlers build their JSON as they always did (``ExperimentRun.to_json``); these
models describe it, and the fuzzing test (``tests/access/test_fuzz.py``) checks every
response against them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from fedhub.openapi import QueryModel

Status = Literal["queued", "running", "completed", "failed", "cancelled"]


class TenantQuery(QueryModel):
    tenant: str | None = Field(None, description="platform admins: the tenant to read")


class PageQuery(TenantQuery):
    limit: int | None = Field(None, description="at most this many runs (1-500)")
    cursor: str | None = Field(None, description="the previous page's next_cursor")


class EventsQuery(QueryModel):
    after: int | None = Field(
        None, ge=0, description="resume after this round (or the Last-Event-ID header)"
    )


class Experiment(BaseModel):
    id: str
    tenant: str
    user: str
    name: str
    status: Status
    spec: dict[str, Any]
    rounds: int
    rounds_done: int
    cancel_requested: bool
    error: str | None
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    metrics: list[dict[str, Any]] = Field(
        default_factory=list, description="one record per finished round (a single run only)"
    )


class ExperimentPage(BaseModel):
    experiments: list[Experiment]
    next: str | None
    next_cursor: str | None


class MeterRow(BaseModel):
    limit: str
    description: str
    unit: str
    window: str | None
    allowed: float | int | bool | str | None
    used: float | int
    enforced_at: list[str]
    enforced: bool


class Quota(BaseModel):
    tenant: str
    tier: str
    tier_display_name: str
    status: str
    limits: dict[str, Any]
    usage: dict[str, Any]
    meters: list[MeterRow]


class Agent(BaseModel):
    agent: int = Field(description="the agent group's index (a client of the run)")
    district: int = Field(description="the district of the network the group controls")
    last_reward: float | None = Field(
        description="its reward in the last round it trained (null before its first)"
    )
    episodes: int = Field(description="episodes it has simulated so far")
    health: Literal["ok", "lost", "retrying"] = Field(
        description="lost: its worker was lost and the round's retries ran out"
    )


class Agents(BaseModel):
    experiment: str
    agents: list[Agent] = Field(description="empty until the run's first round is recorded")
