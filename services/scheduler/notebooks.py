"""What a job runs: a bundled report by name, or a notebook in the owner's home.

``"usage"`` names ``notebooks/reports/usage.ipynb`` (package data ``fedhub.notebooks``);
anything with a slash or ending in ``.ipynb`` is a path relative to the owner's home.
A path may not leave the home (``..``, an absolute path): the run is the owner's, but the
service (root) checks the parameters by reading the notebook, and must read only theirs.
"""

from __future__ import annotations

import os
import re
from importlib.resources import files
from pathlib import Path, PurePosixPath

from fedhub.errors import InvalidRequest
from fedhub.scheduler.runner import read_in_home

REPORT_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


def bundled_reports() -> dict[str, Path]:
    folder = Path(str(files("fedhub.notebooks") / "reports"))
    return {p.stem: p for p in sorted(folder.glob("*.ipynb"))}


def resolve_notebook(name: str, home: Path) -> Path:
    """The notebook file ``name`` stands for (400 when it is neither a report nor a path
    inside the home)."""
    if not isinstance(name, str) or not name:
        raise InvalidRequest("notebook must be a bundled report's name or a path in your home")
    if REPORT_NAME.match(name) and not name.endswith(".ipynb"):
        reports = bundled_reports()
        if name not in reports:
            raise InvalidRequest(
                f"no bundled report {name!r}; there are: {', '.join(reports) or 'none'}"
            )
        return reports[name]
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or path.suffix != ".ipynb":
        raise InvalidRequest(
            f"notebook {name!r} must be a .ipynb path inside your home, like reports/daily.ipynb"
        )
    return home / path


def read_notebook(path: Path, home: Path) -> bytes:
    """The notebook's bytes; one in the home is read only if it really is inside it (no link
    out of the home, no link as the file): the service runs as root."""
    if str(path).startswith(bundled_root()):
        return path.read_bytes()
    if not os.path.realpath(path).startswith(os.path.realpath(home) + os.sep):
        raise InvalidRequest(f"notebook {path.name} is not inside your home")
    return read_in_home(path, home)


def notebook_parameters(path: Path, home: Path) -> set[str] | None:
    """The names the notebook's ``parameters`` cell defines (papermill's own inspection);
    None when it has no such cell (then any parameter is refused)."""
    import nbformat
    from papermill.inspection import _infer_parameters

    try:
        nb = nbformat.reads(read_notebook(path, home).decode(), as_version=4)
    except FileNotFoundError:
        raise InvalidRequest(f"no notebook {path.name} in your home") from None
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise InvalidRequest(f"cannot read notebook {path.name}: {type(e).__name__}") from None
    for cell in nb.cells:  # papermill reads cell.metadata.tags as an attribute
        cell.metadata.setdefault("tags", [])
    if not any("parameters" in c.metadata.tags for c in nb.cells):
        return None
    spec = nb.metadata.get("kernelspec") or {}
    kernel, language = spec.get("name") or "python3", spec.get("language") or "python"
    try:
        return {p.name for p in _infer_parameters(nb, name=kernel, language=language)}
    except Exception as e:  # a language papermill cannot inspect, a cell it cannot parse
        raise InvalidRequest(f"cannot read the parameters of {path.name}: {e}") from None


def bundled_root() -> str:
    return os.path.realpath(str(files("fedhub.notebooks")))


def check_parameters(path: Path, home: Path, parameters: dict) -> None:
    """Refuse (400) a parameter the notebook's ``parameters`` cell does not define."""
    if not isinstance(parameters, dict):
        raise InvalidRequest("parameters must be an object of name: value")
    known = notebook_parameters(path, home)  # also: the notebook exists and is readable
    if not parameters:
        return
    unknown = sorted(set(parameters) - (known or set()))
    if unknown:
        where = (
            "its parameters cell defines " + ", ".join(sorted(known))
            if known
            else ("it has no cell tagged 'parameters'")
        )
        raise InvalidRequest(f"notebook {path.name} takes no parameter {', '.join(unknown)}: "
                             f"{where}")  # fmt: skip
