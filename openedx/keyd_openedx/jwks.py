"""keyd's JWKS as Open edX reads it: RSA keys only, in the exact `keyd jwks --format edx` form."""

import base64
import json
import os
import re
from typing import Any, Dict, List, Optional

import jwt

from .transport import Client, Response

# Members of a private or symmetric JWK: never part of a public set.
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


class JwksError(ValueError):
    """A JWKS document that must not be installed (unparseable, private material, no RSA key)."""


_B64URL = re.compile(r"^[A-Za-z0-9_-]+$")

# The algorithms an RSA key may name (PyJWT's RSA families); anything else ("none", "HS256", an EC
# algorithm, a number) makes the document malformed.
RSA_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")

# Registered JWK members (RFC 7517 section 4) and the JSON type each must have when present.
_MEMBER_TYPES = {"kty": str, "use": str, "kid": str, "alg": str, "key_ops": list, "x5u": str, "x5c": list,
                 "x5t": str, "x5t#S256": str}


def _b64_int(value: Any, what: str) -> int:
    if not isinstance(value, str) or not _B64URL.match(value) or len(value) % 4 == 1:
        raise JwksError("{} is not a base64url string".format(what))
    raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    n = int.from_bytes(raw, "big")
    if n == 0:
        raise JwksError("{} is zero".format(what))
    return n


def _b64_uint(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _check_members(key: Dict[str, Any], name: str) -> None:
    """Raises JwksError when a registered member has the wrong JSON type, or a list member holds
    anything but strings."""
    for member, kind in _MEMBER_TYPES.items():
        if member not in key:
            continue
        value = key[member]
        if not isinstance(value, kind) or (kind is list and not all(isinstance(v, str) for v in value)):
            raise JwksError("key {}: {!r} must be a JSON {}".format(name, member, "string" if kind is str
                                                                   else "list of strings"))


def edx_key(key: Dict[str, Any]) -> Dict[str, Any]:
    """Returns one public RSA JWK with the members, order and encoding go-jose gives it
    (use, kty, kid, alg, n, e; minimal big-endian integers), as `keyd jwks --format edx` prints.
    Raises JwksError for a malformed member (a non-string kid or alg, an alg an RSA key cannot have,
    n or e not a base64url integer, an even or tiny exponent)."""
    name = repr(key.get("kid")) if isinstance(key.get("kid"), str) else "#?"
    _check_members(key, name)
    alg = key.get("alg")
    if alg is not None and alg not in RSA_ALGS:
        raise JwksError("key {}: alg {!r} is not an RSA signature algorithm ({})".format(name, alg, ", ".join(RSA_ALGS)))
    n = _b64_int(key.get("n"), "key {}: n".format(name))
    e = _b64_int(key.get("e"), "key {}: e".format(name))
    if e < 3 or e % 2 == 0 or e.bit_length() > 64:
        raise JwksError("key {}: e is not a usable RSA public exponent".format(name))
    if n.bit_length() < 1024 or n % 2 == 0:
        raise JwksError("key {}: n is not a usable RSA modulus (odd, 1024 bits or more)".format(name))
    out: Dict[str, Any] = {}
    if key.get("use"):
        out["use"] = key["use"]
    out["kty"] = "RSA"
    if key.get("kid"):
        out["kid"] = key["kid"]
    if alg:
        out["alg"] = alg
    out["n"] = _b64_uint(n)
    out["e"] = _b64_uint(e)
    return out


def _loads(document: Any) -> Any:
    try:
        return json.loads(document)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise JwksError("not JSON ({})".format(str(exc)[:120])) from None


def rsa_keys(document: Any) -> List[Dict[str, Any]]:
    """Returns the RSA keys of a JWKS (a JSON string, bytes or an already decoded dict) in edx form.

    Raises JwksError, and only JwksError, for anything that must not be installed: not a JWKS, a key
    without kty, a malformed member (see edx_key), private or symmetric key material, an RSA key
    PyJWT cannot use, or no RSA key at all. Other key types (EC, OKP) are valid in keyd's JWKS but
    Open edX IDAs cannot use them: they are left out, as are keys whose use is not "sig".
    """
    if isinstance(document, (bytes, bytearray, str)):
        document = _loads(document)
        if isinstance(document, str):  # the JSON string a settings file may hold
            document = _loads(document)
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksError('not a JWKS (no "keys" list)')
    out = []
    for i, key in enumerate(document["keys"]):
        if not isinstance(key, dict) or not isinstance(key.get("kty"), str):
            raise JwksError("key {} has no kty".format(i))
        name = repr(key["kid"]) if isinstance(key.get("kid"), str) else "#{}".format(i)
        private = [m for m in _PRIVATE_MEMBERS if m in key]
        if private:
            raise JwksError("key {} holds private or symmetric key material".format(name))
        _check_members(key, name)
        if key["kty"] != "RSA" or key.get("use", "sig") != "sig":
            continue
        k = edx_key(key)
        try:
            jwt.PyJWK(k)
        except Exception as exc:  # PyJWT and cryptography raise several types; none may escape
            raise JwksError("key {} is not a usable RSA key ({}: {})".format(name, type(exc).__name__, exc)) from None
        out.append(k)
    if not out:
        raise JwksError("no RSA key (Open edX IDAs accept only RSA keys)")
    return out


def edx_setting(keys: List[Dict[str, Any]]) -> str:
    """The JWT_PUBLIC_SIGNING_JWK_SET value: compact JSON, one line, as keyd's Go encoder writes it."""
    return json.dumps({"keys": keys}, separators=(",", ":"))


EMPTY_SET = edx_setting([])


def kids(setting: Any) -> List[str]:
    """The kids of a JWT_PUBLIC_SIGNING_JWK_SET value (empty when it holds none or cannot be read)."""
    try:
        doc = json.loads(setting) if isinstance(setting, (str, bytes)) else setting
        return [str(k.get("kid", "?")) for k in doc.get("keys", [])]
    except (ValueError, AttributeError, TypeError):
        return []


def verify_with_setting(token: str, setting: Any, audience: Optional[str]) -> Dict[str, Any]:
    """Verifies a token the way edx-drf-extensions does with JWT_PUBLIC_SIGNING_JWK_SET: every key of
    the set is tried, RS256/RS512 for RSA keys, kid ignored. Raises jwt.PyJWTError when none verifies."""
    if not setting:
        raise jwt.InvalidTokenError("JWT_PUBLIC_SIGNING_JWK_SET is empty")
    key_set = jwt.PyJWKSet.from_json(setting if isinstance(setting, str) else json.dumps(setting))
    last: Optional[Exception] = None
    for key in key_set.keys:
        if key.key_type != "RSA":
            continue
        try:
            return jwt.decode(token, key=key.key, algorithms=["RS256", "RS512"], audience=audience,
                              options={"verify_aud": bool(audience), "require": ["exp", "iat"]})
        except jwt.PyJWTError as exc:
            last = exc
    raise last or jwt.InvalidTokenError("no RSA key in JWT_PUBLIC_SIGNING_JWK_SET")


_HOST_CHARS = re.compile(r"[^A-Za-z0-9._-]")


def instance_id() -> str:
    """Keyd-Instance of this process: <hostname>:<pid>, within keyd's [A-Za-z0-9._:-]{1,64}."""
    pid = str(os.getpid())
    host = _HOST_CHARS.sub("-", os.uname().nodename or "host")[: 63 - len(pid)] or "host"
    return "{}:{}".format(host, pid)


def fetch(http: Client, url: str, timeout: float, client: Optional[str] = None,
          instance: bool = False, etag: Optional[str] = None) -> Response:
    """GET keyd's JWKS with this package's headers (Keyd-Instance only when instance is true).
    Raises transport.TransportError when no complete answer came within timeout."""
    headers = {}
    if client:
        headers["Keyd-Client"] = client
    if instance:
        headers["Keyd-Instance"] = instance_id()
    if etag:
        headers["If-None-Match"] = etag
    return http.request("GET", url, timeout, headers=headers)


