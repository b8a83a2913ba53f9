"""A run's output formats: ipynb always, html and pdf as a job asks, rendered by nbconvert
and WeasyPrint; a hub without WeasyPrint refuses pdf with a 400 that says so."""

from __future__ import annotations

import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from fedhub.errors import InvalidRequest
from fedhub.scheduler import formats


def test_formats_are_checked_and_ordered():
    assert formats.check(["pdf", "html"]) == ["ipynb", "html", "pdf"]
    assert formats.check([]) == ["ipynb"]
    with pytest.raises(InvalidRequest, match="unknown output format docx"):
        formats.check(["docx", "html"])


def test_pdf_is_refused_where_weasyprint_cannot_be_loaded():
    """A Python in which ``import weasyprint`` fails, as on a hub without the pdf extra."""
    code = (
        "import sys; sys.modules['weasyprint'] = None\n"
        "from fedhub.scheduler import formats\n"
        "print(formats.check(['html']))\n"
        "try:\n    formats.check(['pdf'])\n"
        "except Exception as e:\n    print(type(e).__name__, e.status, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.splitlines()  # fmt: skip
    assert out[0] == "['ipynb', 'html']"
    assert out[1].startswith("InvalidRequest 400 this hub cannot render PDF")
    assert "pip install 'fedhub[pdf]'" in out[1]


def test_html_and_pdf_are_rendered_next_to_the_notebook(tmp_path):
    cell = new_code_cell("print('the total is 42')",
                         outputs=[new_output("stream", text="the total is 42\n")])  # fmt: skip
    executed = tmp_path / "notebook.ipynb"
    executed.write_text(nbformat.writes(new_notebook(cells=[cell])))
    formats.render(executed, ["ipynb", "pdf"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notebook.ipynb", "notebook.pdf"]
    assert (tmp_path / "notebook.pdf").read_bytes().startswith(b"%PDF")
    formats.render(executed, ["ipynb", "html"])
    assert "the total is 42" in (tmp_path / "notebook.html").read_text()
