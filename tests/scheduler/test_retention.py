"""Retention of outputs: the newest ``keep_runs`` finished runs keep their folder, older
ones are emptied; the deletion, done as root in the owner's home, follows no link."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from fedhub.db import session_scope
from fedhub.scheduler import claims, retention
from fedhub.scheduler.models import ScheduledJob, ScheduledRun
from tests.scheduler.test_claims import NOON, make_job, runs

LOG = logging.getLogger("test")


def run_folder(home, job_id, run_id):
    folder = home / "reports" / job_id / run_id
    folder.mkdir(parents=True)
    (folder / "notebook.ipynb").write_text("{}")
    return folder


def test_only_the_newest_runs_keep_their_outputs(migrated_db, tmp_path):
    url = migrated_db
    job = make_job(url)
    with session_scope(url) as s:
        s.get(ScheduledJob, job.id).keep_runs = 2
    folders = {}
    for i, status in enumerate(["succeeded", "failed", "succeeded", "running"]):
        run = claims.run_now(url, job, NOON + timedelta(minutes=i))
        with session_scope(url) as s:
            row = s.get(ScheduledRun, run.id)
            row.status, row.outputs = status, ["notebook.ipynb"]
        folders[run.id] = run_folder(tmp_path, job.id, run.id)
    ids = list(folders)
    assert retention.prune(url, lambda user: tmp_path, LOG) == [ids[0]]
    assert not folders[ids[0]].exists() and all(folders[i].exists() for i in ids[1:])
    assert [r.outputs for r in runs(url, job.id)] == [[], *[["notebook.ipynb"]] * 3]
    assert retention.prune(url, lambda user: tmp_path, LOG) == []  # the row stays, emptied


def test_a_link_in_the_home_sends_the_deletion_nowhere(tmp_path):
    home, outside = tmp_path / "home", tmp_path / "outside"
    (outside / "run1").mkdir(parents=True)
    (outside / "run1" / "precious").write_text("keep me")
    (home / "reports").mkdir(parents=True)
    (home / "reports" / "job1").symlink_to(outside)
    with pytest.raises(OSError):
        retention.remove_run_folder(home, "job1", "run1")
    assert (outside / "run1" / "precious").read_text() == "keep me"
    # a link inside the run's folder is removed, not followed
    run = run_folder(home, "job2", "run2")
    (run / "escape").symlink_to(outside)
    assert retention.remove_run_folder(home, "job2", "run2") is True
    assert not run.exists() and (outside / "run1" / "precious").exists()
    assert retention.remove_run_folder(home, "job2", "run2") is False
