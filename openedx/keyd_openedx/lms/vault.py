"""The LMS's Vault token from AppRole: one per process, cached, renewed before its TTL ends."""

import logging
import os
import threading
import time
from typing import Callable, Optional

from django.views.decorators.debug import sensitive_variables

from .. import KeydSigningError
from ..conf import SigningConfig
from ..transport import Client, Response, TransportError

log = logging.getLogger(__name__)


class AppRoleToken:
    """Logs in with AppRole and keeps the token fresh.

    The token is renewed (auth/token/renew-self) once two thirds of its lease have passed, and a
    new one is obtained by logging in when it is not renewable, when renewal fails or when Vault
    caps the renewal (the token's max TTL is near). Thread-safe; a forked child starts with its
    own lock and connections and keeps the inherited token until it needs renewal.
    """

    def __init__(self, cfg: SigningConfig, http: Optional[Client] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._cfg = cfg
        self._http = http or Client(cfg.verify)
        self._clock = clock
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._token: Optional[str] = None
        self._accessor: Optional[str] = None
        self._renewable = False
        self._lease = 0.0
        self._renew_at = 0.0
        self._expires_at = 0.0
        self.logins = 0
        self.renewals = 0

    @property
    def accessor(self) -> Optional[str]:
        """The current token's accessor (not a secret: it cannot be used to authenticate)."""
        return self._accessor

    def _own_lock(self) -> threading.Lock:
        if self._pid != os.getpid():  # a forked child: the parent's lock may be held forever
            self._lock, self._pid = threading.Lock(), os.getpid()
        return self._lock

    @sensitive_variables()  # hidden from Django's error reports (token, secret ID)
    def token(self) -> str:
        """Returns a valid token, logging in or renewing first when needed."""
        with self._own_lock():
            now = self._clock()
            if self._token and now < self._renew_at:
                return self._token
            if self._token and self._renewable and now < self._expires_at - 0.2:
                if self._renew():
                    return self._token
            try:
                self._login()
            except KeydSigningError:
                if self._token and self._clock() < self._expires_at - 0.2:
                    log.warning("keyd signer: Vault login failed; using the current token until it expires")
                    return self._token
                raise
            return self._token

    @sensitive_variables()  # hidden from Django's error reports (token, secret ID)
    def invalidate(self, token: str) -> None:
        """Forgets token (keyd answered 401 for it), so the next token() logs in again."""
        with self._own_lock():
            if self._token == token:
                self._token = None

    @sensitive_variables()  # hidden from Django's error reports (token, secret ID)
    def _set(self, auth: dict) -> None:
        now = self._clock()
        lease = float(auth.get("lease_duration") or 0)
        self._token = auth["client_token"]
        self._accessor = auth.get("accessor")
        self._renewable = bool(auth.get("renewable"))
        self._lease = lease
        if lease <= 0:  # a token without TTL: never renewed
            self._renew_at = self._expires_at = float("inf")
        else:
            self._renew_at = now + lease * 2 / 3
            self._expires_at = now + lease

    @sensitive_variables()  # hidden from Django's error reports (token, secret ID)
    def _login(self) -> None:
        cfg = self._cfg
        secret_id = cfg.secret_id
        if cfg.secret_id_file:
            try:
                with open(cfg.secret_id_file, encoding="utf-8") as f:
                    secret_id = f.read().strip()
            except OSError as exc:
                raise KeydSigningError("vault_login_failed", "cannot read VAULT_SECRET_ID_FILE {}: {}".format(
                    cfg.secret_id_file, exc.strerror)) from None
        url = "{}/v1/auth/{}/login".format(cfg.vault_addr, cfg.approle_mount)
        try:
            resp = self._http.request("POST", url, cfg.timeout,
                                      json={"role_id": cfg.role_id, "secret_id": secret_id})
        except TransportError as exc:
            raise KeydSigningError("vault_login_failed", "AppRole login at {} failed: {}".format(
                url, type(exc).__name__)) from None
        if resp.status_code != 200:
            raise KeydSigningError("vault_login_failed", "AppRole login at {} answered HTTP {}: {}".format(
                url, resp.status_code, _vault_errors(resp)))
        try:
            auth = resp.json()["auth"]
            auth["client_token"].strip()
        except (ValueError, KeyError, TypeError, AttributeError):
            raise KeydSigningError("vault_login_failed", "AppRole login at {} answered without a token".format(url)) from None
        self._set(auth)
        self.logins += 1
        log.info("keyd signer: logged in to Vault with AppRole (accessor %s, ttl %ss, renewable %s)",
                 self._accessor, int(self._lease), self._renewable)

    @sensitive_variables()  # hidden from Django's error reports (token, secret ID)
    def _renew(self) -> bool:
        cfg = self._cfg
        url = "{}/v1/auth/token/renew-self".format(cfg.vault_addr)
        try:
            resp = self._http.request("POST", url, cfg.timeout, headers={"X-Vault-Token": self._token},
                                      json={"increment": "{}s".format(int(self._lease))})
        except TransportError as exc:
            log.warning("keyd signer: Vault token renewal failed (%s); logging in again", type(exc).__name__)
            return False
        if resp.status_code != 200:
            log.warning("keyd signer: Vault token renewal answered HTTP %s; logging in again", resp.status_code)
            return False
        try:
            auth = resp.json()["auth"]
            lease = float(auth["lease_duration"])
        except (ValueError, KeyError, TypeError):
            return False
        if lease < self._lease / 2:
            # Vault capped the renewal: the token's max TTL is near, so a new login is due.
            log.info("keyd signer: Vault token near its max TTL (%ss left); logging in again", int(lease))
            return False
        auth.setdefault("client_token", self._token)
        auth.setdefault("accessor", self._accessor)
        lease_before = self._lease
        self._set(auth)
        self._lease = lease_before  # keep asking for the role's TTL
        self.renewals += 1
        log.info("keyd signer: renewed the Vault token (accessor %s, ttl %ss)", self._accessor, int(lease))
        return True


def _vault_errors(resp: Response) -> str:
    """Vault's `errors` list, shortened; any other body (a proxy's, a list) is "no error text"."""
    try:
        body = resp.json()
    except ValueError:
        return "no error text"
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return "no error text"
    return "; ".join(str(e) for e in errors)[:200] or "no error text"
