"""Dask preload of every tenant worker process: nobody else of its account may read its memory.

Owner: the tenant's Unix account (the worker process its Nanny, :mod:`.worker`, spawns). The
worker holds the tenant cluster's TLS worker credentials in memory only; a marketplace
strategy host (:mod:`fedhub.fl.market_host`) runs as the same account, so without this it
could ptrace the worker or read ``/proc/<pid>/mem`` and ``/proc/<pid>/environ``.

``prctl(PR_SET_DUMPABLE, 0)`` makes the process non-dumpable: the kernel then refuses ptrace
and those files to any process of the same account (root, the service, still stops it), and
``/proc/<pid>`` belongs to root. Its world-readable files (``statm``, ``stat``) stay
readable, so the Nanny's memory monitor still works. An ``exec`` resets the flag, which is
why the Nanny (:func:`.worker.main`) sets it for itself and adds this module to the
``preload`` of the worker process it starts.
"""

from __future__ import annotations

import ctypes

#: from <linux/prctl.h>
PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3


def forbid_dumps() -> None:
    """Make this process non-dumpable; raise OSError if the kernel refuses."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 or libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0):
        errno = ctypes.get_errno()
        raise OSError(errno, "prctl(PR_SET_DUMPABLE, 0) failed")


def dask_setup(worker) -> None:  # noqa: ARG001 (Dask's preload hook)
    forbid_dumps()
