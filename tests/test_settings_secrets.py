"""Outside development Locard refuses to start with missing, default or weak secrets."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from storage.settings import DEVELOPMENT_AUDIT_KEY, DEVELOPMENT_TOKEN_SECRET, Settings

STRONG = {"token_secret": "Zq8r-2vLk9w_Tx4mPa7sYd3fNc6hJb1e", "audit_key": "u5Gk2Wq9-Rz7tLx3_Vb8nMp4sYc6dHf1"}


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


@pytest.mark.parametrize("environment", ["test", "production"])
@pytest.mark.parametrize("secret", ["token_secret", "audit_key"])
@pytest.mark.parametrize("value", ["", "short-secret", DEVELOPMENT_TOKEN_SECRET, DEVELOPMENT_AUDIT_KEY, "x" * 40,
                                   "abababababababababababababababab"])
def test_weak_or_default_secrets_are_refused(environment: str, secret: str, value: str) -> None:
    extra = {"database_url": "sqlite:///x.db", "webhook_token": "w" * 10 + "0123456789abcdefghij"}
    with pytest.raises(ValidationError, match=secret.upper()):
        _settings(environment=environment, **{**STRONG, secret: value}, **extra)


def test_strong_secrets_start_and_development_has_fallbacks() -> None:
    assert _settings(environment="test", **STRONG).chain_key == STRONG["audit_key"].encode()
    development = _settings(environment="development")
    assert development.token_key == DEVELOPMENT_TOKEN_SECRET and development.chain_key
    with pytest.raises(ValidationError, match="JWKS"):
        _settings(environment="development", oidc_issuer="https://sso.police.example")
