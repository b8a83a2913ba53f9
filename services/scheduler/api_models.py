"""What the scheduler API takes and returns, as pydantic models for its OpenAPI document."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from fedhub.openapi import QueryModel

Status = Literal["queued", "running", "succeeded", "failed", "timed_out", "cancelled"]


class TenantQuery(QueryModel):
    tenant: str | None = Field(None, description="platform admins: the tenant to read")


class PageQuery(TenantQuery):
    limit: int | None = Field(None, description="at most this many (1-500)")
    cursor: str | None = Field(None, description="the previous page's next_cursor")


class RunPageQuery(QueryModel):
    limit: int | None = Field(None, description="at most this many runs (1-500)")
    cursor: str | None = Field(None, description="the previous page's next_cursor")


class JobSpec(BaseModel):
    """A new job. ``notebook``: a bundled report's name (``usage``) or a ``.ipynb`` path in
    your home; either ``cron``: five fields (a sixth counts seconds) read in ``timezone``,
    or ``at``: one run at an ISO date and time (in ``timezone`` unless it has an offset)."""

    model_config = ConfigDict(extra="forbid")

    notebook: str
    cron: str | None = None
    at: str | None = Field(None, description="run once at this time, e.g. 2026-12-24T18:00")
    timezone: str = "UTC"
    formats: list[str] = Field(["ipynb", "html"], description="ipynb (always), html, pdf")
    kernel: str | None = Field(None, description="one of your tier's kernels")
    keep_runs: int | None = Field(None, ge=1, description="keep the newest N runs' outputs")
    name: str | None = Field(None, max_length=255)
    parameters: dict[str, Any] = Field(default_factory=dict)
    timeout_seconds: int | None = Field(None, ge=1)
    notify: bool = True


class JobChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    paused: bool | None = None
    cron: str | None = Field(None, description="a new repeating schedule")
    at: str | None = Field(None, description="instead: run once at this time")
    timezone: str | None = None
    formats: list[str] | None = None
    keep_runs: int | None = Field(None, ge=1)
    parameters: dict[str, Any] | None = None
    notify: bool | None = None


class Job(BaseModel):
    id: str
    tenant: str
    user: str
    name: str
    notebook: str
    parameters: dict[str, Any]
    cron: str | None
    at: str | None
    timezone: str
    formats: list[str]
    kernel: str | None
    keep_runs: int | None
    timeout_seconds: int
    notify: bool
    paused: bool
    next_run_at: str | None
    created_at: str | None


class JobPage(BaseModel):
    jobs: list[Job]
    next: str | None
    next_cursor: str | None


class Run(BaseModel):
    id: str
    job: str
    tenant: str
    user: str
    scheduled_for: str | None
    trigger: Literal["schedule", "manual"]
    status: Status
    started_at: str | None
    finished_at: str | None
    error: str | None
    error_cell: dict[str, Any] | None
    outputs: list[str]
    compute_seconds: float


class RunPage(BaseModel):
    runs: list[Run]
    next: str | None
    next_cursor: str | None
