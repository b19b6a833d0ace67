"""The OpenAPI document, the docs page, and the lazy services provider."""

from __future__ import annotations

from chat_app.api import create_api
from chat_app.container import build_services
from tests.api.support import TestClient

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
