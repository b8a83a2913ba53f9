"""Retention of a job's outputs: only its newest ``keep_runs`` finished runs keep their folder.

The scheduler loop calls :func:`prune` each tick. A pruned run keeps its row (status, times,
error, compute: the history and the meter stay) with ``outputs`` emptied; its folder
``<home>/reports/<job>/<run>/`` is deleted by :func:`remove_run_folder`.

The service runs as root and the home is the owner's: every step from the home down is
opened with ``O_NOFOLLOW`` relative to the previous folder, and ``shutil.rmtree`` with
``dir_fd`` removes the run's folder without following a link inside it, so a link the
owner put anywhere on the way can send the deletion nowhere outside the home.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from fedhub.db import session_scope

from .models import FINISHED, ScheduledJob, ScheduledRun

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def remove_run_folder(home: Path, job_id: str, run_id: str) -> bool:
    """Delete ``<home>/reports/<job_id>/<run_id>``; False if it was not there. Raises
    OSError (``ELOOP``/``ENOTDIR``) where a step is a link or not a folder."""
    fds = [os.open(home, DIR_FLAGS)]
    try:
        for part in ("reports", job_id):
            try:
                fds.append(os.open(part, DIR_FLAGS, dir_fd=fds[-1]))
            except FileNotFoundError:
                return False
        try:
            shutil.rmtree(run_id, dir_fd=fds[-1])
        except FileNotFoundError:
            return False
        return True
    finally:
        for fd in fds:
            os.close(fd)


def prune(db_url: str, home_of: Callable[[str], Path], log) -> list[str]:
    """Empty the outputs of the finished runs beyond each job's ``keep_runs``; their ids."""
    with session_scope(db_url) as s:
        jobs = s.execute(
            select(ScheduledJob.id, ScheduledJob.username, ScheduledJob.keep_runs).where(
                ScheduledJob.keep_runs.is_not(None)
            )
        ).all()
    pruned = []
    for job_id, username, keep in jobs:
        with session_scope(db_url) as s:
            old = s.scalars(
                select(ScheduledRun)
                .where(ScheduledRun.job_id == job_id, ScheduledRun.status.in_(FINISHED))
                .order_by(ScheduledRun.scheduled_for.desc(), ScheduledRun.id.desc())
                .offset(keep)
            ).all()
            for run in old:
                if not run.outputs:
                    continue
                try:
                    remove_run_folder(home_of(username), job_id, run.id)
                except OSError as e:  # a link or a file where a folder should be: left alone
                    log.warning("outputs of run %s not deleted: %s", run.id, e)
                    continue
                run.outputs = []
                pruned.append(run.id)
    return pruned
