"""OpenAPI 3.1 descriptions of fedhub's services, built from their routes and pydantic models.

A handler method declares what it takes and returns with :func:`operation`; the
tornado route regexes give the paths and their parameters; pydantic writes every
JSON Schema (``models_json_schema``, one ``components/schemas`` per document). Nothing
is written by hand, so the description cannot drift from the handlers, and
:func:`build_spec` refuses a route whose handler method was not described: a new
endpoint cannot go undocumented (the service would not start).

Every operation answers its refusals (4xx) with the one error body fedhub
renders (``{"error": {"code", "message", "details"?}}``, :mod:`fedhub.errors`), and
every operation but the description itself needs the hub token. :func:`render_html`
turns a document into a page on the server, so reading it needs no network access.
"""

from __future__ import annotations

import html
import inspect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import models_json_schema
from tornado.web import RequestHandler

from fedhub.errors import ConfigError

HTTP_METHODS = ("get", "put", "post", "delete", "patch")
REF = "#/components/schemas/{model}"
#: ``Authorization: token <t>`` (JupyterHub's own form) or ``Authorization: Bearer <t>``
SECURITY_SCHEMES = {
    "hubToken": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "A JupyterHub API token: `Authorization: token <token>`.",
    },
    "bearer": {"type": "http", "scheme": "bearer", "description": "The same token as Bearer."},
}


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any] | None = None


class ErrorBody(BaseModel):
    """What every refusal (4xx) of every fedhub service carries."""

    error: ErrorDetail


class OpenAPIDocument(BaseModel):
    """An OpenAPI 3.1 document (its full schema is the OpenAPI specification's)."""

    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]


#: A response value: a pydantic model (``application/json``), or ``{media type: model or None}``
#: for endpoints that answer with other media (``None``: no schema, e.g. a PDF). Every 4xx
#: is documented with :class:`ErrorBody`; ``{404: None}`` names one for the reader.
Response = type[BaseModel] | dict[str, type[BaseModel] | None] | None


@dataclass(frozen=True)
class Operation:
    summary: str
    responses: dict[int, Response]
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    public: bool = False
    description: str = ""


def operation(
    summary: str,
    *,
    responses: dict[int, Response],
    query: type[BaseModel] | None = None,
    body: type[BaseModel] | None = None,
    public: bool = False,
) -> Callable:
    """Declare a handler method as an API operation (its docstring becomes the description).

    ``public=True`` marks the rare operation that needs no token.
    """

    def mark(method: Callable) -> Callable:
        method.__openapi__ = Operation(
            summary, responses, query, body, public, inspect.getdoc(method) or ""
        )
        return method

    return mark


class QueryModel(BaseModel):
    """Base of query-string models: an unknown argument is ignored, as tornado does."""

    model_config = ConfigDict(extra="ignore")


# -- paths from tornado route regexes --------------------------------------------------

_GROUP = re.compile(r"\((?!\?)((?:[^()\\]|\\.|\((?:[^()\\]|\\.)*\))*)\)(\?)?")


def _literal(regex: str) -> str:
    """A regex fragment without groups as the text it matches (``\\.`` -> ``.``)."""
    if re.search(r"(?<!\\)[\[\]*+?{}|^$]", regex):
        raise ConfigError(f"route fragment {regex!r} is not literal text; describe it as a group")
    return re.sub(r"\\(.)", r"\1", regex)


def route_paths(regex: str, names: list[str]) -> list[tuple[str, list[dict]]]:
    """The OpenAPI paths of one tornado route and their path parameters.

    Each capturing group is a parameter named after the handler method's argument in
    the same position, constrained by the group's own regex. An optional group of
    literal alternatives (``(\\.html|\\.pdf)?``) is expanded into one path per
    alternative plus the path without it: OpenAPI has no optional path parameters.
    """
    variants: list[tuple[str, list[dict]]] = [("", [])]
    pos = 0
    for index, m in enumerate(_GROUP.finditer(regex)):
        text = _literal(regex[pos : m.start()])
        pattern, optional = m.group(1), m.group(2)
        if optional:
            choices = [""] + [_literal(a) for a in pattern.split("|")]
            variants = [(p + text + c, ps) for p, ps in variants for c in choices]
        else:
            name = names[index]
            param = {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": f"^{pattern}$"},
            }
            variants = [(p + text + "{" + name + "}", ps + [param]) for p, ps in variants]
        pos = m.end()
    tail = _literal(regex[pos:])
    return [("/" + (p + tail).lstrip("/"), ps) for p, ps in variants]


def _accepts(method: Callable, groups: int) -> bool:
    """Whether tornado can call ``method`` with this route's ``groups`` path arguments."""
    try:
        inspect.signature(method).bind(None, *([None] * groups))
    except TypeError:
        return False
    return True


def route_operations(handler: type, groups: int) -> dict[str, Callable]:
    """The handler's HTTP methods, each checked for a declaration and for the route.

    A method that cannot take the route's path arguments would answer every request
    with a 500 (tornado's ``TypeError``), so it is refused here, like an undescribed one.
    """
    found = {}
    for verb in HTTP_METHODS:
        method = getattr(handler, verb)
        if method is getattr(RequestHandler, verb):
            continue
        where = f"{handler.__qualname__}.{verb}"
        if not hasattr(method, "__openapi__"):
            raise ConfigError(
                f"{where} has no @operation: every endpoint of a fedhub service is described "
                "in its OpenAPI document (fedhub.openapi)"
            )
        if not _accepts(method, groups):
            raise ConfigError(f"{where} cannot take its route's {groups} path arguments")
        found[verb] = method
    return found


# -- the document ------------------------------------------------------------------------


def build_spec(title: str, version: str, routes: list[tuple], description: str = "") -> dict:
    """The OpenAPI 3.1 document of ``routes`` (``(regex, Handler[, kwargs])``, relative)."""
    found = []  # (path, verb, operation, path parameters)
    for regex, handler, *_ in routes:
        for verb, method in route_operations(handler, re.compile(regex).groups).items():
            names = list(inspect.signature(method).parameters)[1:]
            for path, params in route_paths(regex, names):
                found.append((path, verb, method.__openapi__, params))
    models = {(ErrorBody, "serialization")}
    for *_, op, _params in found:
        models.update(_models(op))
    refs, defs = models_json_schema(sorted(models, key=_model_key), ref_template=REF)
    schemas = defs.get("$defs", {})
    paths: dict[str, dict] = {}
    for path, verb, op, params in found:
        query = _query_parameters(schemas[_name(refs[op.query, "validation"])]) if op.query else []
        paths.setdefault(path, {})[verb] = _operation_object(
            op, params + query, f"{verb}_{path}", refs
        )
    for query in {op.query for *_, op, _ in found if op.query}:  # a query model is its parameters
        schemas.pop(_name(refs[query, "validation"]), None)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": SECURITY_SCHEMES},
        "security": [{name: []} for name in SECURITY_SCHEMES],
    }


def _models(op: Operation):
    """The (model, JSON Schema mode) pairs an operation refers to."""
    for model in (op.query, op.body):
        if model is not None:
            yield model, "validation"
    for response in op.responses.values():
        media = response if isinstance(response, dict) else {"": response}
        yield from ((m, "serialization") for m in media.values() if m is not None)


def _model_key(item: tuple[type[BaseModel], str]) -> tuple[str, str, str]:
    return (item[0].__module__, item[0].__qualname__, item[1])


def _name(ref: dict) -> str:
    return ref["$ref"].rsplit("/", 1)[1]


def _operation_object(op: Operation, params: list[dict], op_id: str, refs: dict) -> dict:
    out: dict[str, Any] = {
        "operationId": re.sub(r"[^A-Za-z0-9]+", "_", op_id).strip("_"),
        "summary": op.summary,
        "parameters": params,
        "responses": {},
    }
    if op.description:
        out["description"] = op.description
    if op.body is not None:
        schema = refs[op.body, "validation"]
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    for status, response in sorted(op.responses.items()):
        if response is None and status >= 400:  # a refusal named for the reader
            response = ErrorBody
        media = response if isinstance(response, dict) else {"application/json": response}
        content = {
            kind: ({"schema": refs[model, "serialization"]} if model else {})
            for kind, model in media.items()
        }
        out["responses"][str(status)] = {"description": _reason(status), "content": content}
    out["responses"]["4XX"] = {
        "description": "Refused: the error body names the reason",
        "content": {"application/json": {"schema": refs[ErrorBody, "serialization"]}},
    }
    if op.public:
        out["security"] = []
    return out


def _query_parameters(model_schema: dict) -> list[dict]:
    """A query model's fields as ``in: query`` parameters."""
    required = set(model_schema.get("required", []))
    out = []
    for name, prop in model_schema.get("properties", {}).items():
        entry = {"name": name, "in": "query", "required": name in required}
        if prop.get("description"):
            entry["description"] = prop["description"]
        out.append({**entry, "schema": _without_null(prop)})
    return out


def _without_null(prop: dict) -> dict:
    """An optional field's schema as a query value: present (not null) or absent."""
    schema = {k: v for k, v in prop.items() if k not in ("title", "description", "default")}
    branches = [b for b in schema.pop("anyOf", []) if b != {"type": "null"}]
    if len(branches) == 1:
        schema.update(branches[0])
    elif branches:
        schema["anyOf"] = branches
    return schema


def _reason(status: int) -> str:
    from http import HTTPStatus

    return HTTPStatus(status).phrase


# -- the rendered page ---------------------------------------------------------------------


def render_html(spec: dict) -> str:
    """A self-contained HTML page of the document: no script, nothing fetched."""
    e = html.escape
    info = spec["info"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{e(info['title'])}</title>",
        "<style>body{font-family:sans-serif;max-width:60rem;margin:auto}"
        "pre{background:#f4f4f4;padding:.5rem;overflow:auto}"
        "td,th{text-align:left;padding:0 .5rem;vertical-align:top}</style></head><body>",
        f"<h1>{e(info['title'])} <small>{e(info['version'])}</small></h1>",
        f"<pre>{e(info.get('description', ''))}</pre>",
        "<p>The machine-readable description: <a href='openapi.json'>openapi.json</a>. "
        "Send the hub token as <code>Authorization: token &lt;token&gt;</code>.</p>",
    ]
    for path, methods in spec["paths"].items():
        for verb, op in methods.items():
            parts += _operation_html(verb, path, op)
    parts.append("<h2>Schemas</h2>")
    for name, schema in spec["components"]["schemas"].items():
        parts.append(f"<h3 id='{e(name)}'>{e(name)}</h3><pre>{_schema_html(schema, 1)}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _operation_html(verb: str, path: str, op: dict) -> list[str]:
    e = html.escape
    rows = [
        (f"<code>{e(p['name'])}</code>", f"{p['in']}{', required' if p['required'] else ''}",
         _schema_html(p["schema"]))
        for p in op["parameters"]
    ]  # fmt: skip
    for kind, media in op.get("requestBody", {}).get("content", {}).items():
        rows.append(("body", e(kind), _schema_html(media["schema"])))
    for status, response in op["responses"].items():
        for kind, media in response["content"].items():
            answer = f"{e(status)} {e(response['description'])}"
            rows.append((answer, e(kind), _schema_html(media.get("schema", {}))))
    table = "".join(
        f"<tr><td>{a}</td><td>{b}</td><td><code>{c}</code></td></tr>" for a, b, c in rows
    )
    out = [
        f"<h2 id='{e(op['operationId'])}'><code>{verb.upper()} {e(path)}</code></h2>",
        f"<p><strong>{e(op['summary'])}</strong></p>",
    ]
    if op.get("description"):
        out.append(f"<pre>{e(op['description'])}</pre>")
    return [*out, f"<table>{table}</table>"]


def _schema_html(schema: dict, indent: int | None = None) -> str:
    """A schema as escaped JSON whose references link to the schema they name."""
    text = html.escape(json.dumps(schema, indent=indent))
    return re.sub(
        r"\{\s*&quot;\$ref&quot;: &quot;#/components/schemas/(\w+)&quot;\s*\}",
        r"<a href='#\1'>\1</a>",
        text,
    )
