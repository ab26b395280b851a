"""The interactive API docs load an unpinned CDN script and inline script: development only.

Outside development /docs and /redoc do not exist (404, with the usual
Content-Security-Policy), while /openapi.json, which clients and tools read, stays.
"""

from __future__ import annotations

import base64
import os

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from service.web.security import CONTENT_SECURITY_POLICY


def app_in(environment: str, tmp_path):
    return create_app(
        Settings(
            environment=environment,
            secret_key="d" * 48,
            data_dir=tmp_path / "data",
            database_url=f"sqlite:///{tmp_path / 'docs.db'}",
            master_key=base64.b64encode(os.urandom(32)).decode(),
            audit_key_path=tmp_path / "audit-key.pem",
        )
    )


@pytest.mark.parametrize("environment", ["production", "test"])
def test_outside_development_the_docs_pages_are_gone_and_the_schema_stays(environment, tmp_path):
    with TestClient(app_in(environment, tmp_path)) as client:
        for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
            answer = client.get(path)
            assert answer.status_code == 404, path
            assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
            assert "cdn.jsdelivr.net" not in answer.text
        schema = client.get("/openapi.json")
        assert schema.status_code == 200 and schema.json()["info"]["title"] == "Reunite"


def test_in_development_the_docs_pages_are_served(tmp_path):
    with TestClient(app_in("development", tmp_path)) as client:
        for path in ("/docs", "/redoc"):
            answer = client.get(path)
            assert answer.status_code == 200, path
            assert "content-security-policy" not in answer.headers  # Swagger UI and ReDoc need their CDN
        assert client.get("/openapi.json").status_code == 200
