"""Post-processing of the OpenAPI document: what FastAPI cannot infer from the routes.

- The session header is documented as what the API really demands: present, in the strict
  form. Its Python default stays None so that a missing or malformed id is our 400 problem,
  not FastAPI's generic 422.
- Links say how the ids one response hands out feed the parameters of later calls: the session
  a create, resume or reset answers with goes into every operation's `X-Session-Id`; the file an
  upload answers with goes into the download and delete paths, with the same session. Clients
  (and stateful fuzzers such as schemathesis) follow them to chain real calls.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from chat_app.api.deps import SESSION_ID_HEADER
from chat_app.services.session_ids import SESSION_ID_PATTERN

SESSION_HEADER_PARAMETER = f"header.{SESSION_ID_HEADER}"
#: (method, path suffix, status) of the responses whose body is a session (SessionPublic).
SESSION_SOURCES = (
    ("post", "/session", "201"),
    ("get", "/session", "200"),
    ("post", "/session/reset", "201"),
)
#: The response whose body is a file (FilePublic) and the operations that take its id.
FILE_SOURCE = ("post", "/session/files", "201")
FILE_TARGETS = (("get", "/session/files/{file_id}"), ("delete", "/session/files/{file_id}"))


def describe_api(schema: dict[str, Any], *, prefix: str) -> dict[str, Any]:
    """Apply every step below to an OpenAPI document (in place); returns it."""
    require_session_header(schema)
    add_links(schema, prefix=prefix)
    return schema


def require_session_header(schema: dict[str, Any]) -> None:
    """Mark `X-Session-Id` required, in the strict form: anything else is answered with 400."""
    for operation in _operations(schema):
        for parameter in _session_parameters(operation):
            parameter["required"] = True
            parameter["schema"] = {
                "type": "string",
                "pattern": SESSION_ID_PATTERN,
                "title": SESSION_ID_HEADER,
            }


def add_links(schema: dict[str, Any], *, prefix: str) -> None:
    """Link the session and file responses to the operations that take their ids."""
    paths = schema.get("paths", {})
    session_takers = [op for op in _operations(schema) if any(_session_parameters(op))]
    for method, suffix, status in SESSION_SOURCES:
        links = paths[prefix + suffix][method]["responses"][status].setdefault("links", {})
        for target in session_takers:
            links[_link_name(target)] = {
                "operationId": target["operationId"],
                "parameters": {SESSION_HEADER_PARAMETER: "$response.body#/session_id"},
                "description": "Call it in the session this response describes.",
            }
    method, suffix, status = FILE_SOURCE
    links = paths[prefix + suffix][method]["responses"][status].setdefault("links", {})
    for target_method, target_suffix in FILE_TARGETS:
        target = paths[prefix + target_suffix][target_method]
        links[_link_name(target)] = {
            "operationId": target["operationId"],
            "parameters": {
                "path.file_id": "$response.body#/id",
                # The file belongs to the session that uploaded it (another one gets a 404).
                SESSION_HEADER_PARAMETER: f"$request.header.{SESSION_ID_HEADER}",
            },
            "description": "Act on the file this upload stored.",
        }


def _operations(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for item in schema.get("paths", {}).values():
        yield from item.values()


def _session_parameters(operation: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for parameter in operation.get("parameters", []):
        if parameter.get("in") == "header" and parameter.get("name") == SESSION_ID_HEADER:
            yield parameter


def _link_name(operation: dict[str, Any]) -> str:
    # "List Session Audit" -> "ListSessionAudit": link names must match ^[a-zA-Z0-9.\-_]+$.
    return re.sub(r"[^A-Za-z0-9]", "", operation["summary"].title())
