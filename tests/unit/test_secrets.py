"""No secret in a log line, and API tokens that are only ever stored hashed."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from stream_app.api.auth import Identity, create_token, digest, load_tokens
from stream_app.exceptions import ConfigurationError
from stream_app.logs import Redactor, secrets_of
from stream_app.settings import Settings


@pytest.mark.parametrize(
    ("line", "leaked"),
    [
        ("connecting to redis://stream-app:pa55word@127.0.0.1:16379/0?ssl_ca_certs=/ca.pem", "pa55word"),
        ("redis at rediss://:onlyapassword@redis.internal:6380/0", "onlyapassword"),
        ("posting to http://bridge:AmS3cret@alertmanager:9093/api/v2/alerts failed", "AmS3cret"),
        ("GET /x?user=a&password=qwerty&next=1", "qwerty"),
        ("Authorization: Bearer sat_abcDEF-123_xyz", "sat_abcDEF-123_xyz"),
        ("config {'sasl.password': 'topsecret', 'acks': 'all'}", "topsecret"),
        ('{"token": "t0ken-value"}', "t0ken-value"),
    ],
)
def test_credentials_in_any_position_are_masked(line: str, leaked: str) -> None:
    assert leaked not in Redactor([]).scrub(line)


def test_the_settings_secrets_are_masked_wherever_they_appear() -> None:
    settings = Settings(
        kafka_sasl_password=SecretStr("sasl-Pw-1"),
        redis_url=SecretStr("rediss://app:redis-Pw-2@127.0.0.1:16379/0"),
        alertmanager_url="http://am:am-Pw-3@127.0.0.1:9093",
        schema_registry_auth=SecretStr("registry:reg-Pw-4"),
        kafka_client_properties={"ssl.key.password": "key-Pw-5", "acks": "all"},
    )
    redact = Redactor(secrets_of(settings))
    event = {
        "event": "failed: sasl-Pw-1 / redis-Pw-2",
        "detail": ["am-Pw-3", {"nested": "reg-Pw-4 and key-Pw-5"}],
        "count": 3,
    }
    cleaned = redact(None, "info", event)
    text = repr(cleaned)
    for secret in ("sasl-Pw-1", "redis-Pw-2", "am-Pw-3", "reg-Pw-4", "key-Pw-5"):
        assert secret not in text
    assert cleaned["count"] == 3
    assert "all" not in secrets_of(settings)


def test_a_token_is_stored_only_as_its_digest(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    token = create_token(path, "nguyen.van.a", "operator")
    stored = path.read_text(encoding="utf-8")
    assert token not in stored
    assert digest(token) in stored
    tokens = load_tokens(path)
    assert tokens.identify(f"Bearer {token}") == Identity("nguyen.van.a", "operator")
    assert tokens.identify("Bearer sat_wrong") is None
    assert tokens.identify(None) is None
    assert tokens.identify(f"Basic {token}") is None


def test_roles_and_names_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    viewer = create_token(path, "viewer-1", "viewer")
    identity = load_tokens(path).identify(f"Bearer {viewer}")
    assert identity is not None
    assert identity.may("viewer")
    assert not identity.may("operator")
    assert Identity("x", "operator").may("viewer")
    with pytest.raises(ConfigurationError, match="already has a token"):
        create_token(path, "viewer-1", "viewer")
    with pytest.raises(ConfigurationError, match="role"):
        create_token(path, "someone", "admin")
    with pytest.raises(ConfigurationError, match="name"):
        create_token(path, "has space", "viewer")
    assert load_tokens(None).identify(f"Bearer {viewer}") is None, "no tokens file: the API is closed"
