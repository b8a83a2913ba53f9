"""The kinds of request: what each one asks, who approves it, what approving does.

A kind is a :class:`Kind` registered once, at import, by its module in
:mod:`fedhub.approvals.kinds` (:func:`load_kinds` imports them all)."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy.orm import Session

from fedhub.errors import InvalidRequest
from fedhub.tenancy.models import Tenant
from fedhub.tenancy.store import TenantStore, UserInfo

if TYPE_CHECKING:
    from fedhub.approvals.models import ApprovalRequest

#: what :attr:`Kind.apply` / :attr:`Kind.on_reject` may return: run once committed
AfterCommit = Callable[[], None] | None


@dataclass(frozen=True)
class Context:
    """What :attr:`Kind.validate` may look at, inside the transaction that creates the request."""

    tenants: TenantStore
    session: Session
    #: the request's tenant (None: a request with no tenant yet, an onboarding)
    tenant: Tenant | None
    #: who asks, if they have an account (None: someone without one, or fedhub's own code)
    requester: UserInfo | None


@dataclass(frozen=True)
class Kind:
    """One kind of request.

    - ``name``: ``[a-z_]+``, e.g. ``tier_change``;
    - ``approver``: ``"platform"`` (platform admins decide) or ``"tenant"`` (the
      request's tenant's admins decide; platform admins may too);
    - ``validate(payload, ctx) -> dict``: the cleaned payload to store; raises a
      :class:`fedhub.errors.FedhubError` (400 bad payload, 403 not yours to ask,
      409 one is pending already) to refuse the request;
    - ``apply(session, request, actor)``: makes the approved change in the session of
      the transaction that marks the request approved (raise to refuse: the request
      stays pending, the API answers the error, e.g. 409); may return a function
      to run once committed (audit events of the change, its own mail);
    - ``on_reject(session, request, actor)``: optional, the same for a rejection;
    - ``api``: False when people may not ask for it through ``POST
      /api/fedhub/requests`` (fedhub's own code creates it: onboarding, join_tenant);
    - ``needs_tenant``: False when a request may have no tenant (onboarding);
    - ``summary(request) -> str``: one line for lists and emails.
    """

    name: str
    approver: Literal["platform", "tenant"]
    validate: Callable[[dict[str, Any], Context], dict[str, Any]]
    apply: Callable[[Session, ApprovalRequest, str | None], AfterCommit]
    on_reject: Callable[[Session, ApprovalRequest, str | None], AfterCommit] | None = None
    api: bool = True
    needs_tenant: bool = True
    summary: Callable[[ApprovalRequest], str] | None = None

    def __post_init__(self):
        if self.approver not in ("platform", "tenant"):
            raise ValueError(f"kind {self.name}: approver must be 'platform' or 'tenant'")

    def describe(self, request: ApprovalRequest) -> str:
        return self.summary(request) if self.summary else f"{self.name} {request.payload}"


_kinds: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    """Make ``kind`` known (registering a name again replaces it: a reloaded module)."""
    _kinds[kind.name] = kind
    return kind


def get_kind(name: str) -> Kind:
    """The kind called ``name`` (400 naming the known kinds otherwise)."""
    load_kinds()
    try:
        return _kinds[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(_kinds))
        raise InvalidRequest(f"unknown request kind {name!r}: use one of {known}") from None


def kinds() -> dict[str, Kind]:
    load_kinds()
    return dict(_kinds)


_loaded = False


def load_kinds() -> None:
    """Import every module of :mod:`fedhub.approvals.kinds` (each registers its kind)."""
    global _loaded
    if _loaded:
        return
    package = importlib.import_module("fedhub.approvals.kinds")

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{info.name}")
    _loaded = True


# -- while a kind's apply runs ----------------------------------------------------

# the ApprovalStore (not imported here: the store imports this module)
_running: ContextVar[Any] = ContextVar("fedhub_approvals_store", default=None)


def current_store() -> Any:
    """The :class:`~fedhub.approvals.store.ApprovalStore` whose approve (or reject) is
    running a kind's ``apply`` (``current_store().tenants`` is the TenantStore)."""
    store = _running.get()
    if store is None:
        raise RuntimeError("current_store() is only known inside a kind's apply or on_reject")
    return store
