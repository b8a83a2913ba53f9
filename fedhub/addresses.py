"""Where a request comes from: the client's address, as far as fedhub can trust it.

The hub runs tornado with ``xheaders`` behind configurable-http-proxy, so tornado's
``remote_ip`` is the last ``X-Forwarded-For`` hop that is not one of
``c.JupyterHub.trusted_downstream_ips``: the address the proxy saw, which the proxy
appends itself. But tornado prefers an ``X-Real-Ip`` header to that, as is, and the
proxy passes a client's own ``X-Real-Ip`` through: a client could name any address,
and so pass a tenant's IP allowlist, spread its rate limits over made-up addresses, or
write a false address into the audit log. :func:`client_ip` is ``remote_ip`` without
``X-Real-Ip``; every check and record of fedhub uses it. A load balancer in front of
the proxy is trusted by listing it in ``c.JupyterHub.trusted_downstream_ips``.
"""

from __future__ import annotations

from tornado import netutil


def client_ip(request) -> str:
    """The address ``request`` came from, ignoring a client-supplied ``X-Real-Ip``."""
    remote_ip = request.remote_ip
    context = getattr(getattr(request, "connection", None), "context", None)
    address = getattr(context, "address", None)
    peer = address[0] if isinstance(address, tuple) and address else remote_ip
    if "X-Real-Ip" not in request.headers or remote_ip == peer:
        return remote_ip  # tornado's own answer (no header, or no xheaders on this server)
    trusted = getattr(context, "trusted_downstream", set())
    hops = [hop.strip() for hop in request.headers.get("X-Forwarded-For", "").split(",")]
    for hop in reversed(hops):
        if hop not in trusted:
            return hop if netutil.is_valid_ip(hop) else peer
    return peer
