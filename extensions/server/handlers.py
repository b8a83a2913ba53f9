"""``GET /fedhub/api/quota``: the user's tenant, tier, limits and usage.

Tenant, tier and role come from the environment the spawner set; limits and usage from the
experiments service (asked with the user's own token, so it answers for their tenant only).
If the service cannot be reached the environment part is still returned, with ``error``.
"""

from __future__ import annotations

import json

from jupyter_server.base.handlers import APIHandler
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest


class QuotaHandler(APIHandler):
    @web.authenticated
    async def get(self):
        cfg = self.settings["fedhub_quota_config"]
        body = {"tenant": cfg.tenant or None, "tier": cfg.tier or None, "role": cfg.role or None}
        body.update(limits=None, usage=None)
        if not cfg.experiments_url:
            body["error"] = "FEDHUB_EXPERIMENTS_URL is not set in this server"
            self.finish(json.dumps(body))
            return
        url = cfg.experiments_url.rstrip("/") + "/api/v1/quota"
        request = HTTPRequest(
            url,
            headers={"Authorization": f"token {cfg.api_token}"},
            request_timeout=cfg.request_timeout,
        )
        try:  # async: the server's event loop never waits on the service
            response = await AsyncHTTPClient().fetch(request)
            body.update(json.loads(response.body))
        except HTTPClientError as e:
            body["error"] = f"the experiments service answered {e.code}"
        except OSError as e:
            self.log.warning("fedhub quota: experiments service unreachable: %s", e)
            body["error"] = "the experiments service is unreachable"
        self.finish(json.dumps(body))
