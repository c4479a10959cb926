"""Signs the LMS's asymmetric JWTs through keyd's POST /v1/sign, and installs that signer in the LMS."""

import importlib
import json
import logging
import time
from typing import Any, Dict, Optional

from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from .. import KeydSigningError
from ..conf import SigningConfig, validate_signing
from ..jwks import JwksError, fetch, rsa_keys
from ..transport import Client, Response, TransportError
from .vault import AppRoleToken

log = logging.getLogger(__name__)

# The Open edX module whose global _encode_and_sign _create_jwt looks up at call time.
JWT_MODULE = "openedx.core.djangoapps.oauth_dispatch.jwt"

RETRY_PAUSE = 0.1  # seconds before the one retry on a connection error or a 503


class KeydSigner:
    """A client of keyd's /v1/sign that fails closed: any failure raises KeydSigningError.

    A 401 with AppRole logs in again and retries once; a connection error, a timeout or a 503 is
    retried once after 100 ms. So a call takes at most about 2 x TIMEOUT + 0.1 s when keyd is down.
    """

    def __init__(self, cfg: SigningConfig) -> None:
        self.cfg = cfg
        self.http = Client(cfg.verify)
        self.approle = AppRoleToken(cfg, self.http) if cfg.auth == "approle" else None
        self.sign_url = cfg.url + "/v1/sign"
        self.jwks_url = cfg.url + "/.well-known/jwks.json"

    def _credential(self) -> str:
        if self.approle is not None:
            return self.approle.token()
        return self.cfg.token or ""

    def sign(self, payload: Dict[str, Any]) -> str:
        """Returns keyd's signature of payload as a compact JWT."""
        return self.sign_response(payload)["token"]

    @sensitive_variables()  # Django's error reports never show this frame's bearer token
    def sign_response(self, payload: Dict[str, Any]) -> Dict[str, Any]:
        """Posts {"claims": payload} to keyd and returns its answer {"token", "kid", "alg", "expires_at"}."""
        try:
            request_body = json.dumps({"claims": payload}, separators=(",", ":")).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise KeydSigningError("invalid_claims", "the LMS's claims are not JSON ({})".format(exc)) from None
        relogged = retried = False
        while True:
            token = self._credential()
            try:
                resp = self.http.request(
                    "POST", self.sign_url, self.cfg.timeout, data=request_body,
                    headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"},
                )
            except TransportError as exc:
                if not exc.retriable:
                    raise KeydSigningError("keyd_unreachable", "request to {} failed ({})".format(
                        self.sign_url, type(exc).__name__)) from None
                if not retried:
                    retried = True
                    log.warning("keyd signer: %s from %s; retrying once", type(exc).__name__, self.sign_url)
                    time.sleep(RETRY_PAUSE)
                    continue
                raise KeydSigningError("keyd_unreachable", "keyd at {} did not answer twice ({})".format(
                    self.sign_url, type(exc).__name__)) from None
            if resp.status_code == 503 and not retried:
                retried = True
                log.warning("keyd signer: keyd answered 503 (%s); retrying once", _error_code(resp))
                time.sleep(RETRY_PAUSE)
                continue
            if resp.status_code == 401 and self.approle is not None and not relogged:
                relogged = True
                log.warning("keyd signer: keyd refused the Vault token (401); logging in again")
                self.approle.invalidate(token)
                continue
            if resp.status_code != 200:
                code, message = _error(resp)
                log.error("keyd signer: keyd refused to sign: HTTP %s %s: %s", resp.status_code, code, message)
                raise KeydSigningError(code, message)
            try:
                body = resp.json()
                if not isinstance(body.get("token"), str) or body["token"].count(".") != 2:
                    raise ValueError
            except (ValueError, AttributeError):
                raise KeydSigningError("invalid_response", "keyd at {} answered 200 without a token".format(
                    self.sign_url)) from None
            return body

    def jwks_problem(self) -> Optional[str]:
        """None when keyd's JWKS holds an RSA key, else a sentence saying why IDAs could verify nothing
        (or why the JWKS could not be read)."""
        try:
            resp = fetch(self.http, self.jwks_url, self.cfg.timeout)
        except TransportError as exc:
            return "cannot fetch {} ({})".format(self.jwks_url, type(exc).__name__)
        if resp.status_code != 200:
            return "cannot fetch {}: HTTP {}".format(self.jwks_url, resp.status_code)
        try:
            rsa_keys(resp.content)
        except JwksError as exc:
            return "keyd's JWKS at {} cannot be used by Open edX IDAs: {}".format(self.jwks_url, exc)
        return None


def _error_code(resp: Response) -> str:
    return _error(resp)[0]


def _error(resp: Response):
    try:
        body = resp.json()
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return body["error"], str(body.get("message") or "keyd gave no message")
    except ValueError:
        pass
    return "http_{}".format(resp.status_code), "keyd answered HTTP {} without a keyd error body".format(resp.status_code)


_installed: Optional[KeydSigner] = None


def current() -> Optional[KeydSigner]:
    """The signer installed in this process by the app's ready(), if any."""
    return _installed


def install() -> Optional[KeydSigner]:
    """Replaces _encode_and_sign of the LMS's JWT module when KEYD_SIGNING is set.

    Asymmetric calls go to keyd; symmetric calls go to the original function unchanged. Logs one
    line saying it is installed, or why not. A KEYD_SIGNING with bad values raises
    ImproperlyConfigured: an LMS configured for keyd never starts signing with a local key.
    """
    global _installed
    value = getattr(settings, "KEYD_SIGNING", None)
    if not value:
        log.info("keyd signer not installed: KEYD_SIGNING is not set")
        return None
    cfg = validate_signing(value)
    try:
        module = importlib.import_module(JWT_MODULE)
        original = module._encode_and_sign
    except (ImportError, AttributeError) as exc:
        if isinstance(exc, ImportError) and not _absent(exc):
            raise  # the module is there but broken: never leave the LMS signing with a local key
        log.warning("keyd signer not installed: %s._encode_and_sign is not available (%s); "
                    "is this the LMS?", JWT_MODULE, exc)
        return None
    original = getattr(original, "keyd_original", original)  # installing twice wraps once
    signer = KeydSigner(cfg)

    def _encode_and_sign(payload, use_asymmetric_key, secret):
        if use_asymmetric_key:
            return signer.sign(payload)
        return original(payload, use_asymmetric_key, secret)

    _encode_and_sign.keyd_original = original
    _encode_and_sign.keyd_signer = signer
    _encode_and_sign.__doc__ = "Asymmetric JWTs are signed by keyd; symmetric ones as before."
    module._encode_and_sign = _encode_and_sign
    _installed = signer
    log.info("keyd signer installed: asymmetric JWTs are signed by keyd at %s (auth %s)", cfg.url, cfg.auth)
    problem = signer.jwks_problem()
    if problem:
        # No RSA key means no IDA could verify a token keyd signs: an error. Unreachable: a warning.
        level = logging.WARNING if problem.startswith(("cannot fetch", "http")) else logging.ERROR
        log.log(level, "keyd signer: %s", problem)
    return signer


def _absent(exc: ImportError) -> bool:
    """True when the import failed because JWT_MODULE or one of its packages does not exist."""
    name = getattr(exc, "name", None) or ""
    return isinstance(exc, ModuleNotFoundError) and bool(name) and (JWT_MODULE + ".").startswith(name + ".")


def uninstall() -> None:
    """Puts the original _encode_and_sign back (for tests and for turning the plugin off live)."""
    global _installed
    _installed = None
    try:
        module = importlib.import_module(JWT_MODULE)
    except ImportError:
        return
    original = getattr(module._encode_and_sign, "keyd_original", None)
    if original is not None:
        module._encode_and_sign = original
