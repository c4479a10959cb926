"""Validation of the KEYD_SIGNING and KEYD_JWKS settings: every bad value named at once."""

import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

from django.core.exceptions import ImproperlyConfigured

# Keyd-Client and Keyd-Instance values keyd records (anything else it ignores).
HEADER_VALUE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

# Keys whose values are never repeated in an error message.
_SECRET_KEYS = {"TOKEN", "VAULT_SECRET_ID"}


@dataclass(frozen=True)
class SigningConfig:
    """KEYD_SIGNING, validated."""

    url: str
    auth: str  # "token" or "approle"
    token: Optional[str]
    vault_addr: Optional[str]
    role_id: Optional[str]
    secret_id: Optional[str]
    secret_id_file: Optional[str]
    approle_mount: str
    timeout: float
    ca_bundle: Optional[str]

    def __repr__(self) -> str:  # never show the token or the secret ID
        return "SigningConfig(url={!r}, auth={!r}, vault_addr={!r}, timeout={!r})".format(
            self.url, self.auth, self.vault_addr, self.timeout)

    @property
    def verify(self):
        return self.ca_bundle or True


@dataclass(frozen=True)
class JwksConfig:
    """KEYD_JWKS, validated."""

    url: str
    client: str
    max_staleness: float
    timeout: float
    ca_bundle: Optional[str]

    @property
    def verify(self):
        return self.ca_bundle or True


def _url(v: Any) -> Optional[str]:
    if isinstance(v, str) and re.match(r"^https?://[^/\s]+", v):
        return None
    return "must be an http:// or https:// URL"


def _nonempty(v: Any) -> Optional[str]:
    return None if isinstance(v, str) and v.strip() else "must be a non-empty string"


def _seconds(v: Any) -> Optional[str]:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
        return "must be a number of seconds above 0"
    return None


def _file(v: Any) -> Optional[str]:
    if not isinstance(v, str) or not v:
        return "must be a file path"
    if not os.path.isfile(v):
        return "names no readable file"
    return None


def _client(v: Any) -> Optional[str]:
    if isinstance(v, str) and HEADER_VALUE.match(v):
        return None
    return "must be 1 to 64 characters of A-Z a-z 0-9 . _ : -"


def _check(name: str, value: Any, rules: Dict[str, Callable[[Any], Optional[str]]],
           required: List[str], problems: List[str]) -> Dict[str, Any]:
    if not isinstance(value, dict):
        problems.append("{} must be a dict, got {}".format(name, type(value).__name__))
        return {}
    for key in sorted(set(value) - set(rules)):
        problems.append("{}[{!r}] is not a known key (known: {})".format(name, key, ", ".join(sorted(rules))))
    for key in required:
        if value.get(key) in (None, ""):
            problems.append("{}[{!r}] is required".format(name, key))
    for key, rule in rules.items():
        if value.get(key) in (None, "") and key in required:
            continue
        if key not in value or value[key] is None:
            continue
        why = rule(value[key])
        if why:
            shown = "(hidden)" if key in _SECRET_KEYS else repr(value[key])
            problems.append("{}[{!r}] {}, got {}".format(name, key, why, shown))
    return value


def _fail(name: str, problems: List[str]) -> None:
    if problems:
        raise ImproperlyConfigured("{} is invalid: {}.".format(name, "; ".join(problems)))


def validate_signing(value: Any) -> SigningConfig:
    """Returns KEYD_SIGNING as a SigningConfig, or raises ImproperlyConfigured naming every bad value."""
    problems: List[str] = []
    rules = {
        "URL": _url,
        "AUTH": lambda v: None if v in ("token", "approle") else 'must be "token" or "approle"',
        "TOKEN": _nonempty,
        "VAULT_ADDR": _url,
        "VAULT_ROLE_ID": _nonempty,
        "VAULT_SECRET_ID": _nonempty,
        "VAULT_SECRET_ID_FILE": _file,
        "VAULT_APPROLE_MOUNT": _nonempty,
        "TIMEOUT": _seconds,
        "CA_BUNDLE": _file,
    }
    v = _check("KEYD_SIGNING", value, rules, ["URL"], problems)
    auth = v.get("AUTH") or "token"
    if auth == "token":
        if not v.get("TOKEN"):
            problems.append("KEYD_SIGNING['TOKEN'] is required with AUTH \"token\"")
        for key in ("VAULT_ROLE_ID", "VAULT_SECRET_ID", "VAULT_SECRET_ID_FILE"):
            if v.get(key):
                problems.append("KEYD_SIGNING[{!r}] is only used with AUTH \"approle\"".format(key))
    elif auth == "approle":
        for key in ("VAULT_ADDR", "VAULT_ROLE_ID"):
            if not v.get(key):
                problems.append("KEYD_SIGNING[{!r}] is required with AUTH \"approle\"".format(key))
        if bool(v.get("VAULT_SECRET_ID")) == bool(v.get("VAULT_SECRET_ID_FILE")):
            problems.append("KEYD_SIGNING needs exactly one of 'VAULT_SECRET_ID' and 'VAULT_SECRET_ID_FILE' with AUTH \"approle\"")
        if v.get("TOKEN"):
            problems.append("KEYD_SIGNING['TOKEN'] is only used with AUTH \"token\"")
    _fail("KEYD_SIGNING", problems)
    return SigningConfig(
        url=v["URL"].rstrip("/"),
        auth=auth,
        token=v.get("TOKEN") or None,
        vault_addr=(v.get("VAULT_ADDR") or "").rstrip("/") or None,
        role_id=v.get("VAULT_ROLE_ID") or None,
        secret_id=v.get("VAULT_SECRET_ID") or None,
        secret_id_file=v.get("VAULT_SECRET_ID_FILE") or None,
        approle_mount=(v.get("VAULT_APPROLE_MOUNT") or "approle").strip("/"),
        timeout=float(v.get("TIMEOUT") or 2),
        ca_bundle=v.get("CA_BUNDLE") or None,
    )


def validate_jwks(value: Any) -> JwksConfig:
    """Returns KEYD_JWKS as a JwksConfig, or raises ImproperlyConfigured naming every bad value."""
    problems: List[str] = []
    rules = {
        "URL": _url,
        "CLIENT": _client,
        "MAX_STALENESS": _seconds,
        "TIMEOUT": _seconds,
        "CA_BUNDLE": _file,
    }
    v = _check("KEYD_JWKS", value, rules, ["URL", "CLIENT"], problems)
    _fail("KEYD_JWKS", problems)
    return JwksConfig(
        url=v["URL"],
        client=v["CLIENT"],
        max_staleness=float(v.get("MAX_STALENESS") or 86400),
        timeout=float(v.get("TIMEOUT") or 2),
        ca_bundle=v.get("CA_BUNDLE") or None,
    )
