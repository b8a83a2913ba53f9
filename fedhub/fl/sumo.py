"""SUMO's programs and the cache folder their outputs live in, shared by the traffic RL
environment (:mod:`fedhub.fl.rl`) and the road-network graphs (:mod:`fedhub.fl.roads`)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def sumo_binary(name: str) -> str:
    """A SUMO program from the eclipse-sumo wheel (``sumo.SUMO_HOME/bin``), else from PATH."""
    try:
        import sumo

        path = Path(sumo.SUMO_HOME) / "bin" / name
        if path.exists():
            return str(path)
    except ImportError:
        pass
    found = shutil.which(name)
    if found is None:
        from fedhub.extras import MissingExtra

        raise MissingExtra(f"traffic simulation needs SUMO's {name}: pip install 'fedhub[fl]'")
    return found


def cache_dir() -> Path:
    path = Path(
        os.environ.get("FEDHUB_TRAFFIC_CACHE")
        or Path(tempfile.gettempdir()) / f"fedhub-traffic-{os.getuid()}"
    )
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    # in a shared /tmp another account could have made the folder first and planted a net
    st = path.stat()
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise RuntimeError(
            f"{path} belongs to another account or others may write it: "
            "set FEDHUB_TRAFFIC_CACHE to a folder of your own"
        )
    return path
