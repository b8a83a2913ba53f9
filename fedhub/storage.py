"""Storage, measured once: the same code for the ``storage_gb`` quota and the storage bill.

The tier spawner measures a tenant's members before a spawn (``c.TierSpawner.storage_path_template``)
and billing samples every member once a day (``storage_gb_days``). Both call
:func:`tenant_bytes` / :func:`directory_bytes` on paths made from one template, so a tenant
cannot be inside one and over the other, and homes are found wherever they live
(``/home/{username}`` in production, ``<state>/homes/{username}`` under ``fedhub up``).

What is counted: allocated blocks (like ``du``), symlinks not followed, unreadable
entries skipped.

The template's default, for processes that do not get it from configuration, is
``$FEDHUB_STORAGE_PATH_TEMPLATE``, else ``$FEDHUB_STATE_DIR/homes/{username}`` (where
``fedhub up``'s ``UnixAccountSpawner.home_dir_template`` puts homes).

A tenant's own store (its private datasets, :mod:`fedhub.datasets`) counts too: it lives in
:func:`tenant_data_root` ``/<slug>``, ``$FEDHUB_TENANT_DATA_DIR`` else
``$FEDHUB_STATE_DIR/tenant-data``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

PATH_TEMPLATE_ENV = "FEDHUB_STORAGE_PATH_TEMPLATE"
TENANT_DATA_ENV = "FEDHUB_TENANT_DATA_DIR"
GB = 1024**3


def default_path_template() -> str:
    """``$FEDHUB_STORAGE_PATH_TEMPLATE``, else ``$FEDHUB_STATE_DIR/homes/{username}``, else ""."""
    explicit = os.environ.get(PATH_TEMPLATE_ENV)
    if explicit:
        return explicit
    state = os.environ.get("FEDHUB_STATE_DIR")
    return os.path.join(state, "homes", "{username}") if state else ""


def home_path(template: str, username: str) -> str:
    return template.format(username=username)


def directory_bytes(path: str | os.PathLike) -> int:
    """Disk usage of a tree (allocated blocks, like ``du``); symlinks are not followed."""
    total = 0
    stack = [os.fspath(path)]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    total += st.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
    return total


def user_bytes(template: str, username: str) -> int:
    return directory_bytes(home_path(template, username))


def tenant_data_root() -> str:
    """Where tenants' own stores live: ``$FEDHUB_TENANT_DATA_DIR``, else
    ``$FEDHUB_STATE_DIR/tenant-data``, else "" (no tenant stores)."""
    explicit = os.environ.get(TENANT_DATA_ENV)
    if explicit:
        return explicit
    state = os.environ.get("FEDHUB_STATE_DIR")
    return os.path.join(state, "tenant-data") if state else ""


def tenant_store_bytes(slug: str) -> int:
    """Disk usage of tenant ``slug``'s own store (0 when there is none)."""
    root = tenant_data_root()
    if not root or not slug or os.sep in slug or slug.startswith("."):
        return 0
    return directory_bytes(os.path.join(root, slug))


def tenant_bytes(template: str, usernames: Iterable[str], tenant: str | None = None) -> int:
    """The storage a tenant's ``storage_gb`` quota counts: the sum over its members' homes,
    plus the tenant's own store when ``tenant`` is given."""
    homes = sum(user_bytes(template, u) for u in usernames)
    return homes + (tenant_store_bytes(tenant) if tenant else 0)
