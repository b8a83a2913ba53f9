"""Fixtures of tests/foundation: a fresh, migrated SQLite database (``url``)."""

from __future__ import annotations

import pytest


@pytest.fixture
def url(tmp_path):
    from fedhub import db

    url = f"sqlite:///{tmp_path / 'fedhub.sqlite'}"
    db.upgrade(url)
    yield url
    db.dispose_engines()
