"""fedhub's hub pages: one template folder in the hub's own Jinja environment.

The pages fedhub adds to the hub (sign-up, sessions, security) extend JupyterHub's
``page.html`` and are rendered by name with ``BaseHandler.render_template``, like the
hub's own. fedhub's ``page.html`` extends the hub's (``templates/page.html``, JupyterHub's
documented way to extend a default template) and adds *Sessions* and *Security* to the
navigation bar, so every hub page links to them.
"""

from __future__ import annotations

from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent / "templates"


def add_template_path(app) -> None:
    """Put fedhub's templates before JupyterHub's defaults, after an operator's own folders.

    Called by the authenticator when the hub builds it, which is before the hub makes its
    Jinja environment from ``JupyterHub.template_paths``. An operator's folder listed in
    ``c.JupyterHub.template_paths`` still wins over fedhub's (to rebrand ``page.html``,
    extend ``templates/page.html`` there and keep the two links).
    """
    paths = getattr(app, "template_paths", None)
    if paths is None or str(TEMPLATES) in paths:
        return
    default = app._template_paths_default()[0]
    paths.insert(paths.index(default) if default in paths else len(paths), str(TEMPLATES))
