"""``python -m fedhub.scheduler.execute NOTEBOOK OUTDIR``: one run, as the owner's account.

The scheduler starts this after dropping to the owner's Unix account (:mod:`.runner`), so
papermill, its kernel and every file written belong to the owner. Parameters come as JSON
in ``$FEDHUB_RUN_PARAMETERS``. It writes ``notebook.ipynb`` (executed), the renderings
``$FEDHUB_RUN_FORMATS`` asks for (``notebook.html``, ``notebook.pdf``: :mod:`.formats`; also
for a failed run, the error cell is in them) and ``result.json``, which the service reads: ``{"status", "error", "error_cell"}``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from fedhub.scheduler.formats import render


def error_cell(exc) -> dict:
    """What a user needs to find the failure: the cell, the exception and its traceback."""
    return {
        "cell_index": getattr(exc, "cell_index", None),
        "execution_count": getattr(exc, "exec_count", None),
        "source": getattr(exc, "source", None),
        "ename": getattr(exc, "ename", type(exc).__name__),
        "evalue": getattr(exc, "evalue", str(exc)),
        "traceback": list(getattr(exc, "traceback", []) or []),
    }


def kernel_of(source: Path) -> tuple[str | None, str | None]:
    """The job's kernel from its tier if it names one (``$FEDHUB_JOB_KERNEL``, its spec in
    ``$JUPYTER_PATH``), else the notebook's own kernel and language if it names them, else
    the scheduler's default kernel (a Python one)."""
    import nbformat

    chosen = os.environ.get("FEDHUB_JOB_KERNEL")
    if chosen:
        spec_file = Path(os.environ["JUPYTER_PATH"]) / "kernels" / chosen / "kernel.json"
        language = (
            json.loads(spec_file.read_text()).get("language") if spec_file.is_file() else None
        )
        return chosen, language or "python"
    spec = nbformat.read(str(source), as_version=4).metadata.get("kernelspec") or {}
    if spec.get("name"):
        return spec["name"], spec.get("language")
    return os.environ.get("FEDHUB_RUN_KERNEL") or "python3", "python"


def main(argv: list[str]) -> int:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source, outdir = Path(argv[0]), Path(argv[1])
    outdir.mkdir(parents=True, exist_ok=True)
    executed = outdir / "notebook.ipynb"
    parameters = json.loads(os.environ.get("FEDHUB_RUN_PARAMETERS") or "{}")
    result: dict = {"status": "succeeded", "error": None, "error_cell": None}
    try:
        kernel, language = kernel_of(source)
        papermill.execute_notebook(
            str(source),
            str(executed),
            parameters=parameters,
            kernel_name=kernel,
            language=language,
            cwd=str(outdir),
            progress_bar=False,
        )
    except PapermillExecutionError as e:
        result.update(status="failed", error=f"{e.ename}: {e.evalue}", error_cell=error_cell(e))
    except Exception as e:  # no kernel, unreadable notebook: the run fails, with why
        result.update(status="failed", error=f"{type(e).__name__}: {e}")
    if executed.exists():
        formats = json.loads(os.environ.get("FEDHUB_RUN_FORMATS") or '["ipynb", "html"]')
        try:
            render(executed, formats)
        except Exception as e:  # the notebook ran: say why a rendering is missing
            if result["status"] == "succeeded":
                result.update(status="failed", error=f"rendering failed: {type(e).__name__}: {e}")
    (outdir / "result.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
