"""The notebook client follows a list endpoint's pages (``?limit=&cursor=``), as
``fedhub.experiments.list`` and ``fedhub.federations.list`` do through
:func:`fedhub.client.paged`. Against a tiny loopback server that pages like the services
(limit clamped to 500, ``next_cursor`` null on the last page); the real service's own
paging is tested in test_service.py."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

import fedhub
from fedhub import client

RUNS = [{"id": f"run{i:04d}", "status": "completed"} for i in range(1203)]  # newest first


class Pages(BaseHTTPRequestHandler):
    asked: list[dict] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        query = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
        Pages.asked.append(query)
        start = int(query.get("cursor", 0))
        end = start + max(1, min(int(query.get("limit", 100)), 500))
        body = {
            "experiments": RUNS[start:end],
            "next_cursor": str(end) if end < len(RUNS) else None,
        }
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def service():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join(10)


@pytest.fixture
def pages(service, monkeypatch):
    monkeypatch.setitem(client._overrides, "url", service)
    monkeypatch.setitem(client._overrides, "token", "t")
    Pages.asked = []
    return Pages.asked


def test_list_follows_the_pages_up_to_the_limit(pages):
    runs = fedhub.experiments.list(limit=700, tenant="acme")
    assert [r.id for r in runs] == [r["id"] for r in RUNS[:700]]
    # 500 (the services' largest page), then the 200 still wanted, after the cursor
    assert pages == [{"tenant": "acme", "limit": "500"},
                     {"tenant": "acme", "limit": "200", "cursor": "500"}]  # fmt: skip


def test_list_without_a_limit_reads_every_page(pages):
    assert [r.id for r in fedhub.experiments.list(limit=None)] == [r["id"] for r in RUNS]
    # no limit asked: the service's default page (100), 13 pages, each after the last
    assert [p.get("cursor") for p in pages] == [None] + [str(i) for i in range(100, 1300, 100)]
    assert not any("limit" in p for p in pages)


def test_default_limit_and_a_short_list(pages):
    assert len(fedhub.experiments.list()) == 200 and pages == [{"limit": "200"}]
    assert client.paged("api/v1/experiments", "experiments", 3) == RUNS[:3]
