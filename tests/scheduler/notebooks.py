"""Tiny notebooks the scheduler tests put into a user's home (written as the hub would
find them: owned by the user's account)."""

from __future__ import annotations

import nbformat
from nbformat.v4 import new_code_cell, new_notebook


def whoami(marker: str = "ok") -> str:
    """Writes the kernel's uid and a parameter into ``whoami.txt`` of the run's folder, and
    what the notebook client sees with the run's token into ``client.txt``."""
    params = new_code_cell(f"marker = {marker!r}", metadata={"tags": ["parameters"]})
    body = new_code_cell(
        "import os\n"
        "open('whoami.txt', 'w').write(f'{os.getuid()} {marker}')\n"
        "print('uid', os.getuid())"
    )
    # the run's token is the owner's: the notebook client lists her tenant's jobs with it
    client = new_code_cell(
        "from fedhub.client import scheduler\n"
        "open('client.txt', 'w').write('\\n'.join(sorted(j.name for j in scheduler.jobs())))"
    )
    return nbformat.writes(new_notebook(cells=[params, body, client]))


def failing() -> str:
    ok = new_code_cell("x = 1")
    bad = new_code_cell("raise ValueError('the report broke on purpose')")
    return nbformat.writes(new_notebook(cells=[ok, bad]))


def sleeper(seconds: float = 30) -> str:
    return nbformat.writes(
        new_notebook(cells=[new_code_cell(f"import time; time.sleep({seconds})")])
    )


def kernel_probe() -> str:
    """Writes the ``FEDHUB_KERNEL`` its kernel spec sets (the fedhub-torch spec does)."""
    cell = new_code_cell(
        "import os\nopen('kernel.txt', 'w').write(os.environ.get('FEDHUB_KERNEL', 'none'))"
    )
    return nbformat.writes(new_notebook(cells=[cell]))
