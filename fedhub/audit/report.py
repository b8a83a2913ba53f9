"""The compliance report: ``notebooks/reports/compliance.ipynb`` run with papermill,
rendered to HTML with nbconvert (code hidden: it is a report, not a notebook)."""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

from fedhub.extras import needs_extra

NOTEBOOK = Path(str(files("fedhub.notebooks") / "reports" / "compliance.ipynb"))


def render_compliance(
    tenant: str,
    output_html: str | Path,
    *,
    period_start: str = "",
    period_end: str = "",
    db_url: str = "",
    audit_dir: str = "",
    timeout: int = 300,
) -> Path:
    """Execute the report for ``tenant`` and the period; write HTML; return its path."""
    with needs_extra("notebook", "the compliance report"):
        import nbformat
        import papermill
        from nbconvert import HTMLExporter

    output_html = Path(output_html)
    output_html.parent.mkdir(parents=True, exist_ok=True)
    executed = output_html.with_suffix(".ipynb")
    papermill.execute_notebook(
        str(NOTEBOOK),
        str(executed),
        parameters={
            "tenant": tenant,
            "period_start": period_start,
            "period_end": period_end,
            "db_url": db_url,
            "audit_dir": audit_dir,
        },
        kernel_name="python3",
        progress_bar=False,
        execution_timeout=timeout,
        cwd=os.getcwd(),
    )
    exporter = HTMLExporter(
        exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True
    )
    body, _ = exporter.from_notebook_node(nbformat.read(executed, as_version=4))
    output_html.write_text(body)
    return output_html
