"""fedhub's jupyter-server extension (enabled by ``jupyter_server_config.d/fedhub.json``).

Structure after jupyter-resource-usage: settings in :mod:`.config`, handlers in
:mod:`.handlers`, and this wiring.
"""

from __future__ import annotations

from jupyter_server.utils import url_path_join

from .config import FedhubQuota
from .handlers import QuotaHandler


def _jupyter_server_extension_points():
    return [{"module": "fedhub.extensions.server"}]


def _load_jupyter_server_extension(server_app):
    web_app = server_app.web_app
    web_app.settings["fedhub_quota_config"] = FedhubQuota(parent=server_app)
    base_url = web_app.settings["base_url"]
    web_app.add_handlers(".*$", [(url_path_join(base_url, "fedhub/api/quota"), QuotaHandler)])
    server_app.log.info("fedhub server extension: %s", url_path_join(base_url, "fedhub/api/quota"))


load_jupyter_server_extension = _load_jupyter_server_extension
