"""The OpenAPI document, the docs page, and the lazy services provider."""

from __future__ import annotations

import uuid

import httpx

from chat_app.api import create_api
from chat_app.container import build_services
from chat_app.services.session_ids import SESSION_ID_PATTERN
from tests.api.support import TestClient, assert_problem

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
EXPECTED = {
    ("post", "/api/v1/session"): {"201", "429", "500", "503"},
    ("get", "/api/v1/session"): {"200", "400", "404", "422", "429", "500", "503"},
    ("post", "/api/v1/session/reset"): {"201", "400", "404", "409", "422", "429", "500", "503"},
    ("get", "/api/v1/session/audit"): {"200", "400", "404", "422", "429", "500", "503"},
    ("get", "/api/v1/session/messages"): {"200", "400", "404", "422", "429", "500", "503"},
    ("post", "/api/v1/session/messages"): {"200", "400", "404", "422", "429", "500", "503"},
    ("get", "/api/v1/session/transcript"): {"200", "400", "404", "422", "429", "500", "503"},
    ("get", "/api/v1/session/files"): {"200", "400", "404", "422", "429", "500", "503"},
    ("post", "/api/v1/session/files"): {
        "201", "400", "404", "409", "413", "415", "422", "429", "500", "503"
    },
    ("get", "/api/v1/session/files/{file_id}"): {
        "302", "400", "404", "422", "429", "500", "503"
    },
    ("delete", "/api/v1/session/files/{file_id}"): {
        "204", "400", "404", "422", "429", "500", "503"
    },
    ("get", "/api/v1/blobs/{token}"): {"200", "404", "422", "500", "503"},
    ("post", "/api/v1/admin/sweep"): {"200", "401", "404", "422", "429", "500", "503"},
    ("get", "/api/v1/health"): {"200", "500", "503"},
}
#: The only path parameters: ids of files and download tokens, never a session id.
PATH_PARAMETERS = {"file_id", "token"}


def test_openapi_lists_every_operation(api):
    response = api.get("/openapi.json")

    assert response.status_code == 200
    document = response.json()
    operations = {
        (method, path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    assert set(operations) == set(EXPECTED)
    for key, operation in operations.items():
        assert set(operation["responses"]) == EXPECTED[key], key
        assert operation.get("summary") and operation.get("description"), key
        for status, declared in operation["responses"].items():
            if status[0] in "45":
                assert declared["content"] == {
                    "application/problem+json": {"schema": PROBLEM_REF}
                }, (key, status)


def test_session_header_is_documented_and_no_id_in_urls(api):
    document = api.get("/openapi.json").json()

    for item in document["paths"].values():
        for operation in item.values():
            parameters = {p["name"]: p["in"] for p in operation.get("parameters", [])}
            assert parameters.get("X-Session-Id", "header") == "header"
            assert {name for name, where in parameters.items() if where == "path"} <= (
                PATH_PARAMETERS
            )
            assert {name for name, where in parameters.items() if where == "query"} <= {
                "dry_run"
            }
            assert "session" not in " ".join(parameters).lower().replace("x-session-id", "")
    problem = document["components"]["schemas"]["Problem"]
    upload = document["paths"]["/api/v1/session/files"]["post"]["requestBody"]["content"]
    assert set(upload) == {"multipart/form-data"}
    sweep = document["paths"]["/api/v1/admin/sweep"]["post"]
    assert sweep["security"] == [{"AdminToken": []}]
    assert document["components"]["securitySchemes"]["AdminToken"] == {
        "type": "http", "scheme": "bearer", "description": "The value of CHAT_APP_ADMIN_TOKEN."
    }
    assert set(problem["required"]) == {"type", "title", "status", "detail", "request_id"}


def test_docs_page_is_served(api):
    response = api.get("/docs")

    assert response.status_code == 200
    assert "/api/v1/openapi.json" in response.text


def test_provider_is_called_once_on_first_request(make_settings):
    calls = []

    def provider():
        calls.append(1)
        return build_services(make_settings())

    client = TestClient(create_api(provider))
    assert calls == []
    assert client.get("/api/v1/openapi.json").status_code == 200
    assert calls == []

    assert client.get("/api/v1/health").status_code == 200
    assert client.get("/api/v1/health").status_code == 200
    assert calls == [1]


SESSION_TAKERS = {
    ("get", "/api/v1/session"), ("post", "/api/v1/session/reset"),
    ("get", "/api/v1/session/audit"), ("get", "/api/v1/session/messages"),
    ("post", "/api/v1/session/messages"), ("get", "/api/v1/session/transcript"),
    ("get", "/api/v1/session/files"), ("post", "/api/v1/session/files"),
    ("get", "/api/v1/session/files/{file_id}"), ("delete", "/api/v1/session/files/{file_id}"),
}


def operations_of(document: dict) -> dict[tuple[str, str], dict]:
    return {(method, path): operation for path, item in document["paths"].items()
            for method, operation in item.items()}


def test_session_header_is_documented_as_required_in_the_strict_form(api):
    # Regression (schemathesis, positive_data_acceptance): the header was documented as optional
    # and any string, yet a missing or malformed id is always a 400.
    operations = operations_of(api.get("/openapi.json").json())

    takers = set()
    for key, operation in operations.items():
        for parameter in operation.get("parameters", []):
            if parameter["name"] == "X-Session-Id":
                takers.add(key)
                assert parameter["required"] is True, key
                assert parameter["schema"]["type"] == "string", key
                assert parameter["schema"]["pattern"] == SESSION_ID_PATTERN, key
    assert takers == SESSION_TAKERS


def test_session_responses_link_to_every_operation_taking_the_header(api):
    operations = operations_of(api.get("/openapi.json").json())
    taker_ids = {operations[key]["operationId"] for key in SESSION_TAKERS}

    for source, status in [(("post", "/api/v1/session"), "201"),
                           (("get", "/api/v1/session"), "200"),
                           (("post", "/api/v1/session/reset"), "201")]:
        links = operations[source]["responses"][status]["links"]
        assert {link["operationId"] for link in links.values()} == taker_ids, source
        for link in links.values():
            assert link["parameters"] == {"header.X-Session-Id": "$response.body#/session_id"}


def resolve(expression: str, response: httpx.Response, request_headers: dict[str, str]) -> str:
    """The two runtime expressions our links use."""
    if expression.startswith("$response.body#/"):
        return response.json()[expression.removeprefix("$response.body#/")]
    assert expression.startswith("$request.header."), expression
    return request_headers[expression.removeprefix("$request.header.")]


def follow(api, document: dict, link: dict, response: httpx.Response,
           request_headers: dict[str, str]) -> httpx.Response:
    """Call the operation a link names with the parameters it carries."""
    [(path, method)] = [(path, method) for path, item in document["paths"].items()
                        for method, operation in item.items()
                        if operation["operationId"] == link["operationId"]]
    headers, path_values = {}, {}
    for name, expression in link["parameters"].items():
        where, _, parameter = name.partition(".")
        value = resolve(expression, response, request_headers)
        (headers if where == "header" else path_values)[parameter] = value
    # A session link leaves the file id to the caller: an unknown one is then the answer.
    url = path.format(file_id=path_values.get("file_id", str(uuid.uuid4())))
    if method == "post" and url.endswith("/messages"):
        return api.client.post(url, headers=headers, json={"content": "hello"})
    if method == "post" and url.endswith("/files"):
        return api.client.post(url, headers=headers, files={"file": ("a.txt", b"a\n")})
    return api.client.request(method.upper(), url, headers=headers, follow_redirects=False)


def test_following_the_links_makes_successful_calls(api):
    document = api.get("/openapi.json").json()
    operations = operations_of(document)
    created = api.post("/session")
    session_links = operations[("post", "/api/v1/session")]["responses"]["201"]["links"]

    reset_link = session_links.pop("ResetSession")  # last: it ends the session
    for name, link in session_links.items():
        response = follow(api, document, link, created, {})
        if name in ("DownloadFile", "DeleteFile"):
            assert_problem(response, 404)
        else:
            assert response.status_code in (200, 201), (name, response.text)
        if name == "UploadFile":
            upload, upload_headers = response, {"X-Session-Id": created.json()["session_id"]}

    file_links = operations[("post", "/api/v1/session/files")]["responses"]["201"]["links"]
    downloaded = follow(api, document, file_links["DownloadFile"], upload, upload_headers)
    deleted = follow(api, document, file_links["DeleteFile"], upload, upload_headers)
    reset = follow(api, document, reset_link, created, {})

    assert downloaded.status_code == 302
    assert deleted.status_code == 204
    assert reset.status_code == 201
