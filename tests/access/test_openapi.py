"""Every service's OpenAPI document: valid OpenAPI 3.1, every endpoint described, served.

The documents are built from the same routes the services serve (``make_app`` adds the
description's own two routes), so a handler method without ``@operation`` fails here
before it can ship undescribed.
"""

from __future__ import annotations

import html
import json
import re
from collections import defaultdict

import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator
from tornado.web import RequestHandler

from fedhub.errors import ConfigError
from fedhub.openapi import (
    HTTP_METHODS,
    ErrorBody,
    ErrorDetail,
    build_spec,
    operation,
    route_paths,
)
from fedhub.services.audit.handlers import routes as audit_routes
from fedhub.services.billing.app import ROUTES as billing_routes
from fedhub.services.experiments.federations import handlers as federation_routes
from fedhub.services.experiments.handlers import handlers as experiments_routes
from fedhub.services.marketplace.app import ROUTES as marketplace_routes
from fedhub.web import description_routes, service_description
from tests.harness import wait_for

SERVICES = {
    "audit": audit_routes(),
    "billing": billing_routes,
    "experiments": [*experiments_routes(), *federation_routes()],
    "marketplace": marketplace_routes,
}


def served_document(routes: list[tuple]) -> dict:
    """The document as ``make_app`` builds it for a service's routes."""
    return json.loads(service_description([*routes, *description_routes()], "/")["json"])


@pytest.mark.parametrize("service", SERVICES)
def test_document_is_valid_openapi_31(service):
    spec = served_document(SERVICES[service])
    assert spec["openapi"] == "3.1.0"
    OpenAPIV31SpecValidator(spec).validate()
    ids = [op["operationId"] for path in spec["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("service", SERVICES)
def test_every_route_and_method_has_an_operation(service):
    """Every route is in the document, and every HTTP method a handler implements is an
    operation at one of its routes."""
    spec = served_document(SERVICES[service])
    documented = {_shape(path): set(ops) for path, ops in spec["paths"].items()}
    described = defaultdict(set)
    for regex, handler, *_ in [*SERVICES[service], *description_routes()]:
        for path, _params in route_paths(regex, [f"p{i}" for i in range(9)]):
            assert _shape(path) in documented, f"{regex} is not in the document"
            described[handler] |= documented[_shape(path)]
    for handler, verbs in described.items():
        implemented = {
            v for v in HTTP_METHODS if getattr(handler, v) is not getattr(RequestHandler, v)
        }
        assert verbs == implemented, handler
    for path, methods in spec["paths"].items():
        for verb, op in methods.items():
            assert op["summary"], (verb, path)
            refusal = op["responses"]["4XX"]["content"]["application/json"]["schema"]
            assert refusal == {"$ref": "#/components/schemas/ErrorBody"}


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


#: an endpoint of each service that needs a token
PROTECTED = {
    "audit": "events",
    "billing": "usage",
    "experiments": "quota",
    "marketplace": "entitlements",
}


@pytest.mark.slow
@pytest.mark.parametrize("service", SERVICES)
def test_served_without_a_token_and_rendered(hub, service):
    """What a running service serves is the document of its routes; the description and
    its page need no token (they hold no tenant data), the API itself does."""
    base = f"/services/{service}/api/v1"

    def served():
        r = hub.api("GET", f"{base}/openapi.json")
        return r.status_code == 200 and r.json()

    spec = wait_for(served, 120, 0.3, f"{service}'s OpenAPI document")
    OpenAPIV31SpecValidator(spec).validate()
    assert spec["servers"] == [{"url": f"/services/{service}"}]
    assert spec["paths"] == served_document(SERVICES[service])["paths"]
    page = hub.api("GET", f"{base}/docs")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert all(html.escape(path) in page.text for path in spec["paths"])
    assert "<script" not in page.text and "http" not in page.text.split("<body>")[0]
    r = hub.api("GET", f"{base}/{PROTECTED[service]}")
    assert r.status_code == 403 and r.json()["error"]["code"] == "http_403"


def test_an_undescribed_method_fails_the_build():
    class Undescribed(RequestHandler):
        def get(self):
            pass

    with pytest.raises(ConfigError, match=r"Undescribed\.get has no @operation"):
        build_spec("t", "1", [("api/v1/thing", Undescribed)])


def test_a_method_its_route_cannot_call_fails_the_build():
    """Tornado passes a route's groups as arguments: ``get(self)`` at ``things/(\\d+)``
    would answer every request with a 500."""

    class ListOnly(RequestHandler):
        @operation("list", responses={200: ErrorBody})
        def get(self):
            pass

    build_spec("t", "1", [("api/v1/things", ListOnly)])
    with pytest.raises(ConfigError, match=r"ListOnly\.get cannot take its route's 1 path"):
        build_spec("t", "1", [(r"api/v1/things/(\d+)", ListOnly)])


def test_a_named_refusal_carries_the_error_body():
    class Thing(RequestHandler):
        @operation("a thing", responses={200: ErrorDetail, 404: None})
        def get(self):
            pass

    spec = build_spec("t", "1", [("api/v1/thing", Thing)])
    responses = spec["paths"]["/api/v1/thing"]["get"]["responses"]
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    assert responses["404"]["content"] == responses["4XX"]["content"] == error


def test_route_regex_becomes_paths_with_parameters():
    paths = route_paths(r"api/v1/invoices/(\d+)(\.html|\.pdf)?", ["invoice_id", "fmt"])
    assert [p for p, _ in paths] == [
        "/api/v1/invoices/{invoice_id}",
        "/api/v1/invoices/{invoice_id}.html",
        "/api/v1/invoices/{invoice_id}.pdf",
    ]
    param = paths[0][1][0]
    assert param["in"] == "path" and param["required"] is True
    assert param["schema"] == {"type": "string", "pattern": r"^\d+$"}
