"""The bundled dashboards, shown read-only in every user's server.

fedhub ships its dashboards as package data (``fedhub.notebooks/dashboards``, found with
importlib.resources like the kernels and tiers). When a user's server starts, this
extension points a symlink ``dashboards`` in the server's root folder at that package
folder. Why a link made here, and not a copy or a link made by the spawner:

* **Read-only originals.** The package folder belongs to whoever installed fedhub (root);
  user servers run as ``fedhub-<user>`` and can read it but not write it, so a dashboard
  cannot be changed by a user, and an upgrade of fedhub updates every user's dashboards.
* **The user's own account writes into the user's home.** The server runs as the user, so
  the hub never writes into a home it does not own (where a planted symlink could send a
  root write elsewhere); the link is the user's to delete, and comes back at the next start.
* **Any spawner.** The extension runs in every user server, local or in a container, so the
  dashboards arrive wherever fedhub is installed, without a step in the spawner.
* **Voila can serve it.** ``/voila/render/<path>`` reads notebooks through the server's
  contents manager, which follows links below its root: ``voila/render/dashboards/usage.ipynb``.

A ``dashboards`` that is already there and is not such a link (the user's own folder) is
left alone, and the server logs where the dashboards are instead.
"""

from __future__ import annotations

import logging
import os
from importlib.resources import files
from pathlib import Path

#: the bundled dashboards (``notebooks/dashboards`` in a checkout)
SOURCE = Path(str(files("fedhub.notebooks") / "dashboards"))
#: the link's name in the server's root folder, used by the launcher entries' URLs
LINK_NAME = "dashboards"


def link_dashboards(root_dir: str | Path, source: Path = SOURCE, log=None) -> Path | None:
    """Make ``<root_dir>/dashboards`` a link to ``source``; return it, or None if not made.

    An existing link is re-pointed (fedhub moved, e.g. a new Python version's
    site-packages); anything else at that name is the user's and is never touched.
    """
    log = log or logging.getLogger(__name__)
    link = Path(root_dir) / LINK_NAME
    if link.is_symlink():
        if Path(os.readlink(link)) == source:
            return link
        link.unlink()
    elif link.exists():
        log.warning("fedhub dashboards: %s exists and is not fedhub's link; not linked", link)
        return None
    try:
        link.symlink_to(source, target_is_directory=True)
    except OSError as e:  # a read-only root: the dashboards are still at their source
        log.warning("fedhub dashboards: cannot link %s: %s", link, e)
        return None
    return link


def available(source: Path = SOURCE) -> list[str]:
    """The bundled dashboards' file names."""
    return sorted(p.name for p in source.glob("*.ipynb"))
