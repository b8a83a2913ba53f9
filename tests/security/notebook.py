"""Run code in a user's real notebook kernel, as a notebook cell would.

Starts a kernel through the user's single-user server (``POST /api/kernels``), sends
one ``execute_request`` over the kernel's websocket and returns what the cell printed.
Nothing is simulated: the code runs in the same process a notebook's cell would.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import requests
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from tests.harness import HubProcess, wait_for


def start_server(hub: HubProcess, username: str, token: str, timeout: float = 90) -> dict:
    """Start ``username``'s default server and wait until it is ready; returns its model."""
    r = hub.api("POST", f"/hub/api/users/{username}/server", token=token)
    assert r.status_code in (201, 202), r.text

    def ready():
        model = hub.api("GET", f"/hub/api/users/{username}", token=token).json()
        server = model.get("servers", {}).get("")
        return server if server and server.get("ready") else None

    return wait_for(ready, timeout, interval=0.5, what=f"{username}'s server")


def stop_server(hub: HubProcess, username: str, token: str, timeout: float = 30) -> None:
    hub.api("DELETE", f"/hub/api/users/{username}/server", token=token)

    def stopped():
        model = hub.api("GET", f"/hub/api/users/{username}", token=token).json()
        return "" not in model.get("servers", {})

    wait_for(stopped, timeout, interval=0.3, what=f"{username}'s server to stop")


def run_cell(hub: HubProcess, username: str, token: str, code: str, timeout: float = 60) -> str:
    """Execute ``code`` in a new kernel of ``username``'s server; returns its stdout.

    A cell that raises fails the call with the kernel's error name and value.
    """
    base = f"{hub.url}/user/{username}"
    headers = {"Authorization": f"token {token}"}
    r = requests.post(f"{base}/api/kernels", headers=headers, json={}, timeout=30)
    assert r.status_code == 201, r.text
    kernel = r.json()["id"]
    try:
        return asyncio.run(_execute(base, kernel, headers, code, timeout))
    finally:
        requests.delete(f"{base}/api/kernels/{kernel}", headers=headers, timeout=30)


async def _execute(base: str, kernel: str, headers: dict, code: str, timeout: float) -> str:
    url = base.replace("http", "ws", 1) + f"/api/kernels/{kernel}/channels"
    ws = await websocket_connect(HTTPRequest(url, headers=headers, connect_timeout=30))
    msg_id = uuid.uuid4().hex
    ws.write_message(
        json.dumps(
            {
                "header": {
                    "msg_id": msg_id,
                    "msg_type": "execute_request",
                    "username": "test",
                    "session": uuid.uuid4().hex,
                    "version": "5.3",
                },
                "parent_header": {},
                "metadata": {},
                "content": {"code": code, "silent": False, "store_history": False},
                "channel": "shell",
                "buffers": [],
            }
        )
    )
    out: list[str] = []
    error = None
    async with asyncio.timeout(timeout):
        while True:
            raw = await ws.read_message()
            if raw is None:
                raise RuntimeError("kernel websocket closed")
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind == "stream":
                out.append(msg["content"]["text"])
            elif kind == "error":
                error = f"{msg['content']['ename']}: {msg['content']['evalue']}"
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                break
    ws.close()
    if error:
        raise AssertionError(f"cell failed: {error}\n{''.join(out)}")
    return "".join(out)
