"""Who may use the HTTP API: bearer tokens, kept hashed, each with a name and a role.

A token is a random secret shown once, by ``stream-app token create``; only its SHA-256 is stored, in
the TOML file named by ``STREAM_APP_API_TOKENS_FILE`` (a random 256-bit secret needs no slow hash: it
cannot be guessed from its digest). Roles:

- ``viewer``: reads the query API;
- ``operator``: reads too, and acts on alerts (``POST /api/v1/alerts/{key}/directives``): the
  directive records the operator's name, never a name the request claims.

Without a tokens file every API request is refused (401): the API is closed unless someone opened it.
The probes and ``/metrics`` carry no data of the reporters and stay open, for Kubernetes and Prometheus.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from stream_app.exceptions import ConfigurationError

ROLES = ("viewer", "operator")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
TOKEN_ID_DIGITS = 12
TOKEN_PREFIX = "sat_"  # noqa: S105 - a prefix that marks a stream-app token, not a secret


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request authenticated as."""

    name: str
    role: str
    # The token's id: the first hex digits of its digest (names nothing secret; a name may hold several
    # tokens in a hand-edited file). What the API's limits count by. Not part of equality: who, not how.
    token_id: str = field(default="", compare=False)

    def may(self, role: str) -> bool:
        """Whether this identity has ``role`` (an operator may do what a viewer may)."""
        return ROLES.index(self.role) >= ROLES.index(role)


def digest(token: str) -> str:
    # surrogatepass: a header's undecodable bytes arrive as surrogates; a wrong token, never a 500
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class Tokens:
    """The accepted tokens, by their digest."""

    by_digest: dict[str, Identity]

    def identify(self, authorization: str | None) -> Identity | None:
        """The identity of an ``Authorization: Bearer <token>`` header, or None."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        wanted = digest(token.strip())
        for known, identity in self.by_digest.items():
            if hmac.compare_digest(known, wanted):
                return identity
        return None


def load_tokens(path: Path | None) -> Tokens:
    """The tokens file: ``[[token]]`` tables of ``name``, ``role`` and ``sha256``. None: no tokens."""
    if path is None:
        return Tokens({})
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"{path}: {exc}") from exc
    found: dict[str, Identity] = {}
    for index, entry in enumerate(data.get("token", [])):
        name, role, hashed = entry.get("name"), entry.get("role"), entry.get("sha256")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ConfigurationError(f"{path}: token {index}: name {name!r} is not a valid name")
        if role not in ROLES:
            raise ConfigurationError(f"{path}: token {name!r}: role {role!r} is not one of {list(ROLES)}")
        if not isinstance(hashed, str) or not re.fullmatch(r"[0-9a-f]{64}", hashed):
            raise ConfigurationError(f"{path}: token {name!r}: sha256 must be 64 hex digits")
        found[hashed] = Identity(name, role, token_id=hashed[:TOKEN_ID_DIGITS])
    return Tokens(found)


def create_token(path: Path, name: str, role: str) -> str:
    """Make a token for ``name`` with ``role``, append its digest to ``path`` and return the token,
    which is never stored."""
    if not _NAME.fullmatch(name):
        raise ConfigurationError(f"name {name!r}: letters, digits and . _ @ - only, at most 64")
    if role not in ROLES:
        raise ConfigurationError(f"role {role!r} is not one of {list(ROLES)}")
    existing = load_tokens(path) if path.exists() else Tokens({})
    if any(identity.name == name for identity in existing.by_digest.values()):
        raise ConfigurationError(f"{path} already has a token for {name!r}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(f'\n[[token]]\nname = "{name}"\nrole = "{role}"\nsha256 = "{digest(token)}"\n')
    path.chmod(0o600)
    return token
