"""fedhub's JupyterHub application: JupyterHub with its managed services started side by side."""

from __future__ import annotations

import asyncio
import contextlib

from jupyterhub.app import JupyterHub
from jupyterhub.objects import Server
from traitlets import Integer

#: How often a starting service's port is tried (JupyterHub backs off to seconds apart).
SERVICE_POLL_SECONDS = 0.05


class FedhubHub(JupyterHub):
    """JupyterHub that starts its managed services at once instead of one after another.

    ``JupyterHub.start`` calls :meth:`start_service` for each service in turn, and each call
    waits until its service answers. fedhub's services are Python processes that take most of
    a second each to import, so ``fedhub up`` waited for them end to end. Here the first call
    starts every service known at start-up, and each call still returns its own service's
    result, so the hub stops as before when a managed service fails to come up. Services
    added later (the hub's service API) start one at a time, as in JupyterHub.

    JupyterHub waits for a service with a randomised exponential back-off (a try, then up to
    0.2 s, 0.4 s, 0.8 s, 1.6 s... later); with several services starting at once on a small
    machine that left the hub idle for a second or more after the last one was listening.
    A service is also taken as up as soon as its port accepts a connection (what JupyterHub's
    own ``Server.wait_up(http=False)`` checks), tried every :data:`SERVICE_POLL_SECONDS`.
    """

    service_poll_interval = Integer(
        30,
        min=1,
        config=True,
        help="""Seconds between checks that a managed service's process still runs; one that
        exited is started again at the next check. JupyterHub polls its services every 30 s
        and offers no setting for it (its service spawners take no configuration): this one
        changes it. The tests that kill a service set it low (1 s) so its restart is quick.""",
    )

    _service_starts: dict[str, asyncio.Future] | None = None

    def _poll_services(self) -> None:
        """Make every managed service poll its process every ``service_poll_interval``.

        ``Service.start`` makes a new spawner each time (at start-up and at each restart
        after its process exited) and starts its 30 s polling; wrapping the service's
        ``start`` re-times that polling for each new spawner.
        """
        if self.service_poll_interval == 30:
            return  # JupyterHub's own
        for service in self._service_map.values():
            if not service.managed or getattr(service, "_fedhub_polled", False):
                continue
            service._fedhub_polled = True
            service.start = self._repolled(service, service.start)

    def _repolled(self, service, start):
        async def start_then_poll():
            await start()
            if service.spawner is not None:
                service.spawner.poll_interval = self.service_poll_interval
                service.spawner.start_polling()

        return start_then_poll

    async def start_service(self, service_name, service, ssl_context=None) -> bool:
        self._poll_services()
        if self._service_starts is None:
            self._service_starts = {}
            for name, other in self._service_map.items():
                start = super().start_service(name, other, ssl_context)
                self._service_starts[name] = asyncio.ensure_future(start)
        started = self._service_starts.pop(service_name, None)
        if started is None or self._service_map.get(service_name) is not service:
            if started is not None:
                await started  # a service replaced meanwhile: let the old start finish first
            return await super().start_service(service_name, service, ssl_context)
        if not (service.managed and service.url):
            return await started
        listening = asyncio.ensure_future(self._port_open(service, started))
        await asyncio.wait({started, listening}, return_when=asyncio.FIRST_COMPLETED)
        if started.done():  # JupyterHub's own verdict (up, exited or timed out)
            listening.cancel()
            return started.result()
        # up; JupyterHub's own wait finishes in the background
        return listening.result()

    async def _port_open(self, service, started: asyncio.Future) -> bool:
        """True once ``service`` accepts connections; runs until ``started`` says otherwise."""
        server = Server.from_orm(service.orm.server)
        while not started.done():
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection(server.ip or "127.0.0.1", server.port)
                writer.close()
                return True
            await asyncio.sleep(SERVICE_POLL_SECONDS)
        return False
