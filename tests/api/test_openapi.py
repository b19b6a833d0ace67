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
    ("get", "/api/v1/health"): {"200", "500", "503"},
}


def test_openapi_lists_the_five_operations(api):
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

    for path, item in document["paths"].items():
        assert "{" not in path
        for operation in item.values():
            names = {p["name"] for p in operation.get("parameters", [])}
            assert names <= {"X-Session-Id"}
            assert all(p["in"] == "header" for p in operation.get("parameters", []))
    problem = document["components"]["schemas"]["Problem"]
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
