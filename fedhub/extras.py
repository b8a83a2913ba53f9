"""Optional parts of fedhub and the extra that installs each.

The hub and its services run on the base install (``pip install fedhub``); heavier
parts come with extras: ``fl`` (torch, Dask), ``notebook`` (JupyterLab, Voila,
papermill), ``pdf`` (WeasyPrint), ``gateway`` (Dask Gateway), ``kubernetes``
(KubeSpawner), ``traffic`` (SUMO). Code that needs one imports it inside
:func:`needs_extra`, so a missing extra is one line that says what to install, not a
traceback ending in ``No module named 'weasyprint'``::

    with needs_extra("pdf", "PDF invoices"):
        from weasyprint import HTML

The imports stay plain ``import`` statements, so ``deptry`` still sees them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fedhub.errors import ConfigError


class MissingExtra(ConfigError, ImportError):
    """An optional dependency is not installed; the message names the extra."""

    code = "missing_extra"


@contextmanager
def needs_extra(extra: str, purpose: str) -> Iterator[None]:
    """Turn a missing module imported in the block into :class:`MissingExtra`."""
    try:
        yield
    except ModuleNotFoundError as e:
        raise MissingExtra(
            f"{purpose} needs {e.name}, which is not installed: pip install 'fedhub[{extra}]'"
        ) from e
