"""Fixtures for the tier spawner tests: a migrated database with tenants on both engines."""

from __future__ import annotations

import pytest

from fedhub.tenancy.store import TenantStore


@pytest.fixture
def store(migrated_db):
    return TenantStore(migrated_db)
