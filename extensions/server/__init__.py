"""fedhub's jupyter-server extension (enabled by ``jupyter_server_config.d/fedhub.json``).

Structure after jupyter-resource-usage: settings in :mod:`.config`, handlers in
:mod:`.handlers`, the bundled dashboards' link in :mod:`.dashboards`, and this wiring.

Process owner: the user's server, as the user's own account (``fedhub-<user>``).
"""

from __future__ import annotations

from jupyter_server.utils import url_path_join

from .config import FedhubQuota
from .dashboards import link_dashboards
from .handlers import QuotaHandler


def _jupyter_server_extension_points():
    return [{"module": "fedhub.extensions.server"}]


def _load_jupyter_server_extension(server_app):
    web_app = server_app.web_app
    web_app.settings["fedhub_quota_config"] = FedhubQuota(parent=server_app)
    base_url = web_app.settings["base_url"]
    web_app.add_handlers(".*$", [(url_path_join(base_url, "fedhub/api/quota"), QuotaHandler)])
    server_app.log.info("fedhub server extension: %s", url_path_join(base_url, "fedhub/api/quota"))
    link = link_dashboards(server_app.root_dir, log=server_app.log)
    if link is not None:
        server_app.log.info("fedhub dashboards (read-only): %s", link)


load_jupyter_server_extension = _load_jupyter_server_extension
