"""keyd's JWKS as Open edX reads it: RSA keys only, in the exact `keyd jwks --format edx` form."""

import base64
import json
import os
import re
import threading
from typing import Any, Dict, List, Optional

import jwt
import requests

from . import USER_AGENT

# Members of a private or symmetric JWK: never part of a public set.
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


class JwksError(ValueError):
    """A JWKS document that must not be installed (unparseable, private material, no RSA key)."""


def _b64_int(value: Any, what: str) -> int:
    if not isinstance(value, str) or not value:
        raise JwksError("{} is not a base64url string".format(what))
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (ValueError, TypeError):
        raise JwksError("{} is not valid base64url".format(what)) from None
    n = int.from_bytes(raw, "big")
    if n == 0:
        raise JwksError("{} is zero".format(what))
    return n


def _b64_uint(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def edx_key(key: Dict[str, Any]) -> Dict[str, Any]:
    """Returns one public RSA JWK with the members, order and encoding go-jose gives it
    (use, kty, kid, alg, n, e; minimal big-endian integers), as `keyd jwks --format edx` prints."""
    n = _b64_int(key.get("n"), "key {!r}: n".format(key.get("kid")))
    e = _b64_int(key.get("e"), "key {!r}: e".format(key.get("kid")))
    out: Dict[str, Any] = {}
    if key.get("use"):
        out["use"] = key["use"]
    out["kty"] = "RSA"
    if key.get("kid"):
        out["kid"] = key["kid"]
    if key.get("alg"):
        out["alg"] = key["alg"]
    out["n"] = _b64_uint(n)
    out["e"] = _b64_uint(e)
    return out


def rsa_keys(document: Any) -> List[Dict[str, Any]]:
    """Returns the RSA keys of a JWKS (a JSON string, bytes or an already decoded dict) in edx form.

    Raises JwksError for anything that must not be installed: not a JWKS, a key without kty, private
    or symmetric key material, an RSA key PyJWT cannot use, or no RSA key at all. Other key types
    (EC, OKP) are valid in keyd's JWKS but Open edX IDAs cannot use them: they are left out.
    """
    if isinstance(document, (bytes, str)):
        try:
            document = json.loads(document)
        except ValueError as exc:
            raise JwksError("not JSON ({})".format(exc)) from None
        if isinstance(document, str):  # the JSON string a settings file may hold
            return rsa_keys(document)
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksError('not a JWKS (no "keys" list)')
    out = []
    for i, key in enumerate(document["keys"]):
        if not isinstance(key, dict) or not isinstance(key.get("kty"), str):
            raise JwksError("key {} has no kty".format(i))
        private = [m for m in _PRIVATE_MEMBERS if m in key]
        if private:
            raise JwksError("key {!r} holds private or symmetric key material".format(key.get("kid", i)))
        if key["kty"] != "RSA":
            continue
        k = edx_key(key)
        try:
            jwt.PyJWK(k)
        except jwt.PyJWTError as exc:
            raise JwksError("key {!r} is not a usable RSA key ({})".format(key.get("kid", i), exc)) from None
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


class ProcessSession:
    """One requests.Session per process: a forked child never shares its parent's connections."""

    def __init__(self, verify: Any = True) -> None:
        self.verify = verify
        self._pid = -1
        self._session: Optional[requests.Session] = None

    def get(self) -> requests.Session:
        if self._pid != os.getpid() or self._session is None:
            s = requests.Session()
            s.verify = self.verify
            s.headers["User-Agent"] = USER_AGENT
            self._session, self._pid = s, os.getpid()
        return self._session

    def request(self, method: str, url: str, timeout: float, **kwargs: Any) -> requests.Response:
        """session.request with timeout bounding the whole request. requests' own timeout bounds each
        connect and each socket read only, so a peer dripping a byte at a time could hold a call for
        ever; here the call runs in a daemon thread and is given up (ReadTimeout) after timeout."""
        session = self.get()
        done = threading.Event()
        box: Dict[str, Any] = {}

        def run() -> None:
            try:
                box["response"] = session.request(method, url, timeout=timeout, **kwargs)
            except BaseException as exc:  # handed to the caller
                box["error"] = exc
            done.set()

        threading.Thread(target=run, name="keyd-openedx-http", daemon=True).start()
        if not done.wait(timeout):
            raise requests.ReadTimeout("{} {} gave no complete answer within {:g}s".format(method, url, timeout))
        if "error" in box:
            raise box["error"]
        return box["response"]


def fetch(session: ProcessSession, url: str, timeout: float, client: Optional[str] = None,
          instance: bool = False, etag: Optional[str] = None) -> requests.Response:
    """GET keyd's JWKS with this package's headers (Keyd-Instance only when instance is true)."""
    headers = {"User-Agent": USER_AGENT}
    if client:
        headers["Keyd-Client"] = client
    if instance:
        headers["Keyd-Instance"] = instance_id()
    if etag:
        headers["If-None-Match"] = etag
    return session.request("GET", url, timeout, headers=headers)


