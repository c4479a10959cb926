"""Keeps JWT_AUTH["JWT_PUBLIC_SIGNING_JWK_SET"] equal to keyd's RSA keys, per process.

edx-drf-extensions reads that setting at every decode, so replacing its value is all an IDA needs.
The first fetch happens in ready(); a refresher thread then runs in each process that decodes
(started by its first request, so it also starts in every worker a forking server creates), paced
by keyd's Cache-Control max-age and using If-None-Match. A process never verifies with a set older
than it could have refreshed itself: when its first request finds the set older than max-age (a
worker forked from a preloaded master long after the master's fetch), that request fetches first,
bounded by TIMEOUT. After MAX_STALENESS without a successful fetch the set is emptied: no token
verifies until keyd is reachable again.
"""

import logging
import os
import random
import re
import threading
import time
from typing import Any, Dict, List, Optional

from django.conf import settings
from django.core.signals import request_started

from ..conf import JwksConfig, validate_jwks
from ..jwks import EMPTY_SET, JwksError, edx_setting, fetch, instance_id, rsa_keys
from ..transport import Client, TransportError

log = logging.getLogger(__name__)

SETTING = "JWT_PUBLIC_SIGNING_JWK_SET"
DEFAULT_MAX_AGE = 300.0  # when keyd's answer has no max-age (keyd's own default)
MAX_MAX_AGE = 86400.0  # a larger max-age is read as this (keyd's own limit is far below)
MAX_BACKOFF_EXPONENT = 32  # 2**32 s: above any max-age, so the cap applies before any overflow
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)", re.IGNORECASE)


class Clock:
    """Time as the key set sees it. Tests pass a fake one that they advance instead of waiting."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """Waits until event is set (True) or timeout seconds have passed (False)."""
        return event.wait(timeout)


CLOCK = Clock()  # what install() gives the follower


def _jwt_auth() -> Dict[str, Any]:
    value = getattr(settings, "JWT_AUTH", None)
    if value is None:
        value = {}
        settings.JWT_AUTH = value
    return value


class KeySetFollower:
    """The key set of one IDA process (see the module doc)."""

    def __init__(self, cfg: JwksConfig, clock: Optional[Clock] = None) -> None:
        self.cfg = cfg
        self.clock = clock or CLOCK
        self.http = Client(cfg.verify)
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._started = self.clock.monotonic()
        self.static_keys: List[Dict[str, Any]] = []
        self.keyd_keys: List[Dict[str, Any]] = []
        self.etag: Optional[str] = None
        self.max_age = DEFAULT_MAX_AGE
        self.last_success: Optional[float] = None  # monotonic
        self.last_success_wall: Optional[float] = None
        self.last_error: Optional[str] = None
        self.failures = 0
        self.emptied = False
        self.fetches = 0
        self._refresher: Optional[threading.Thread] = None
        self._refresher_pid: Optional[int] = None
        self._stop = threading.Event()

    # -- the value edx-drf-extensions reads -------------------------------------------------

    def load_static(self) -> None:
        """Keeps the RSA keys of the static value the setting holds at startup (logged)."""
        static = _jwt_auth().get(SETTING)
        if not static:
            log.info("keyd jwks: no static %s at startup; the set is keyd's keys alone", SETTING)
            return
        try:
            self.static_keys = rsa_keys(static)
        except JwksError as exc:
            log.error("keyd jwks: the static %s at startup is ignored: %s", SETTING, exc)
            return
        log.info("keyd jwks: keeping %d static RSA key(s) of %s from settings (kids %s) next to keyd's; "
                 "remove the setting's value to drop them", len(self.static_keys), SETTING,
                 ", ".join(k.get("kid", "?") for k in self.static_keys))

    def _install(self) -> None:
        keys = list(self.keyd_keys)
        seen = {(k["n"], k["e"]) for k in keys}
        keys += [k for k in self.static_keys if (k["n"], k["e"]) not in seen]
        _jwt_auth()[SETTING] = edx_setting(keys)

    def _empty(self) -> None:
        # '{"keys":[]}', never "" or None: edx-drf-extensions reads a falsy value as "no asymmetric
        # keys configured", while an empty set makes every asymmetric decode fail.
        _jwt_auth()[SETTING] = EMPTY_SET
        self.emptied = True
        log.error("keyd jwks: no successful fetch of %s for %ds (MAX_STALENESS): the key set is emptied, "
                  "no token verifies until keyd answers again", self.cfg.url, int(self.cfg.max_staleness))

    def check_staleness(self) -> bool:
        """Empties the set when the last successful fetch is older than MAX_STALENESS; True if stale."""
        with self._lock:
            since = self.last_success if self.last_success is not None else self._started
            stale = self.clock.monotonic() - since >= self.cfg.max_staleness
            if stale and not self.emptied:
                self._empty()
            return stale

    # -- fetching ---------------------------------------------------------------------------

    def fetch_once(self, instance: bool = False) -> bool:
        """Fetches keyd's JWKS once and installs it when it is usable; True on success (200 or 304)."""
        self.fetches += 1
        try:
            resp = fetch(self.http, self.cfg.url, self.cfg.timeout, client=self.cfg.client,
                         instance=instance, etag=self.etag)
        except TransportError as exc:
            return self._failed("cannot fetch {} ({})".format(self.cfg.url, type(exc).__name__))
        max_age = _max_age(resp.headers.get("Cache-Control", ""))
        if resp.status_code == 304 and self.keyd_keys:
            with self._lock:
                self._succeeded(max_age)
                if self.emptied:
                    self._install()
                    self.emptied = False
                    log.info("keyd jwks: keyd answers again; key set reinstalled")
            return True
        if resp.status_code != 200:
            return self._failed("{} answered HTTP {}".format(self.cfg.url, resp.status_code))
        try:
            keys = rsa_keys(resp.content)
        except JwksError as exc:
            return self._failed("refusing the JWKS from {}: {}".format(self.cfg.url, exc))
        with self._lock:
            changed = keys != self.keyd_keys or self.emptied
            self.keyd_keys = keys
            self.etag = resp.headers.get("ETag")
            self._succeeded(max_age)
            self._install()
            if self.emptied:
                log.info("keyd jwks: keyd answers again; key set reinstalled")
            self.emptied = False
        if changed:
            log.info("keyd jwks: installed %d key(s) from keyd (kids %s)", len(keys),
                     ", ".join(k.get("kid", "?") for k in keys))
        return True

    def _succeeded(self, max_age: Optional[float]) -> None:
        self.last_success, self.last_success_wall = self.clock.monotonic(), self.clock.time()
        self.last_error, self.failures = None, 0
        if max_age is not None:
            self.max_age = max_age

    def _failed(self, why: str) -> bool:
        self.last_error, self.failures = why, self.failures + 1
        log.warning("keyd jwks: %s; the current key set stays", why)
        return False

    def next_interval(self) -> float:
        """max-age with ±10% jitter, at least 1 s."""
        return max(1.0, self.max_age * random.uniform(0.9, 1.1))

    def backoff(self) -> float:
        """1 s after the first failure, doubling, at most max-age (and at least 1 s). The exponent is
        capped first, so any number of failures in a row gives max-age, never an OverflowError."""
        exponent = min(max(self.failures - 1, 0), MAX_BACKOFF_EXPONENT)
        return max(1.0, min(2.0 ** exponent, self.max_age))

    def age(self) -> Optional[float]:
        """Seconds since the last successful fetch (None: never)."""
        return None if self.last_success is None else self.clock.monotonic() - self.last_success

    # -- the per-process refresher ----------------------------------------------------------

    def ensure_refresher(self) -> None:
        """Starts this process's refresher unless it runs; called by every request (cheap once it runs).

        The request that starts it first makes sure this process does not verify with a set older
        than max-age (one inherited from a preloaded master, or fetched in ready() long ago): it
        fetches synchronously, bounded by TIMEOUT, before any staleness check, so a worker forked
        after MAX_STALENESS does not empty a set that keyd can refresh at once. Other requests of the
        process wait for that fetch (the same bound)."""
        if self.refresher_running:
            self.check_staleness()
            return
        # A forked child got fresh locks from the os.register_at_fork hook (see install()).
        with self._start_lock:
            if not self.refresher_running:
                fetched = self._refresh_if_old()
                self._stop = threading.Event()
                t = threading.Thread(target=self._run, args=(self._stop, fetched), name="keyd-jwks-refresher",
                                     daemon=True)
                with self._lock:
                    self._refresher, self._refresher_pid = t, os.getpid()
                t.start()
                log.info("keyd jwks: refresher started in process %s", instance_id())
        self.check_staleness()

    def _refresh_if_old(self) -> Optional[bool]:
        """Fetches now when the set is older than max-age or MAX_STALENESS (or was never fetched).
        None: no fetch was needed; else whether the fetch succeeded."""
        age = self.age()
        if age is not None and age < min(self.max_age, self.cfg.max_staleness):
            return None
        log.info("keyd jwks: process %s starts with a set %s; fetching before the first verification",
                 instance_id(), "never fetched" if age is None else "fetched {:.0f}s ago (max-age {:g}s)".format(
                     age, self.max_age))
        try:
            return self.fetch_once(instance=True)
        except Exception:  # never fail the request: the refresher retries
            log.exception("keyd jwks: fetch before the first verification failed")
            return False

    def _after_fork(self) -> None:
        """In a forked child: no refresher thread survived the fork, and the locks may be held."""
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._refresher, self._refresher_pid = None, None

    def _run(self, stop: threading.Event, fetched: Optional[bool]) -> None:
        clock = self.clock
        # At once, so this process counts as an instance from its start; when the request that
        # started it has just fetched, after max-age (or the backoff, when that fetch failed).
        first = 0.0 if fetched is None else self.next_interval() if fetched else self.backoff()
        next_fetch = clock.monotonic() + first
        while True:
            since = self.last_success if self.last_success is not None else self._started
            deadline = next_fetch if self.emptied else min(next_fetch, since + self.cfg.max_staleness)
            if clock.wait(stop, max(0.0, deadline - clock.monotonic())):
                return
            try:
                self.check_staleness()
                if clock.monotonic() >= next_fetch:
                    ok = self.fetch_once(instance=True)
                    next_fetch = clock.monotonic() + (self.next_interval() if ok else self.backoff())
            except Exception:  # the refresher must outlive any surprise
                log.exception("keyd jwks: refresher error")
                next_fetch = clock.monotonic() + self.backoff()

    def stop(self) -> None:
        """Stops this process's refresher (tests, shutdown)."""
        self._stop.set()
        t = self._refresher
        if t is not None and t.is_alive() and t is not threading.current_thread():
            t.join(5)

    @property
    def refresher_running(self) -> bool:
        return self._refresher_pid == os.getpid() and self._refresher is not None and self._refresher.is_alive()

    def status(self) -> Dict[str, Any]:
        """What keyd_jwks_status prints."""
        held = _jwt_auth().get(SETTING)
        try:
            held_keys = rsa_keys(held) if held and held != EMPTY_SET else []
        except JwksError:
            held_keys = []
        keyd_kids = {k.get("kid") for k in self.keyd_keys}
        return {
            "url": self.cfg.url,
            "client": self.cfg.client,
            "kids": [(k.get("kid", "?"), "keyd" if k.get("kid") in keyd_kids else "static") for k in held_keys],
            "last_fetch_age": self.age(),
            "last_fetch_time": self.last_success_wall,
            "etag": self.etag,
            "max_age": self.max_age,
            "emptied": self.emptied,
            "last_error": self.last_error,
            "refresher_running": self.refresher_running,
            "max_staleness": self.cfg.max_staleness,
        }


def _max_age(cache_control: str) -> Optional[float]:
    m = _MAX_AGE.search(cache_control or "")
    return min(float(m.group(1)), MAX_MAX_AGE) if m else None


_follower: Optional[KeySetFollower] = None
_fork_hook_registered = False


def current() -> Optional[KeySetFollower]:
    """The key set follower installed in this process by the app's ready(), if any."""
    return _follower


def _on_request(sender=None, **kwargs) -> None:
    f = _follower
    if f is not None:
        f.ensure_refresher()


def _after_fork_in_child() -> None:
    f = _follower
    if f is not None:
        f._after_fork()


def install(clock: Optional[Clock] = None) -> Optional[KeySetFollower]:
    """Wires the key set when KEYD_JWKS is set: static keys kept, first fetch, refresher on requests."""
    global _follower, _fork_hook_registered
    value = getattr(settings, "KEYD_JWKS", None)
    if not value:
        log.info("keyd jwks not installed: KEYD_JWKS is not set")
        return None
    cfg = validate_jwks(value)
    uninstall()
    follower = KeySetFollower(cfg, clock or CLOCK)
    follower.load_static()
    if not follower.fetch_once(instance=False):
        log.warning("keyd jwks: first fetch failed; %s keeps its configured value until keyd answers", SETTING)
    _follower = follower
    request_started.connect(_on_request, dispatch_uid="keyd_openedx.ida.keyset")
    if not _fork_hook_registered and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)
        _fork_hook_registered = True
    log.info("keyd jwks installed: %s follows %s as client %s", SETTING, cfg.url, cfg.client)
    return follower


def uninstall() -> None:
    """Stops the refresher and disconnects from requests (tests, turning the app off live)."""
    global _follower
    if _follower is not None:
        _follower.stop()
    _follower = None
    request_started.disconnect(dispatch_uid="keyd_openedx.ida.keyset")
