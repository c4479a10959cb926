"""Workers forked from a preloaded master (gunicorn --preload, uWSGI without lazy-apps), with real
forks and a real keyd: a worker never verifies with a set older than it could have refreshed itself
(issue 20, item 1)."""

import os

import jwt as pyjwt
import pytest
import requests
from helpers import FakeClock, decode_as_ida, django_apps, start_request
from test_ida import IDA, ida_settings, keyd_token

from keyd_openedx.ida import keyset


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(keyset, "CLOCK", fake)
    return fake


def in_children(n, fn):
    """Runs fn in n forked children, one after the other (each a fresh worker of the same master);
    returns their exit codes (fn's return value, 1 when it raised)."""
    codes = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = fn()
            finally:
                os._exit(code)
        codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    return codes


def verifies(token):
    try:
        decode_as_ida(token)
        return True
    except pyjwt.PyJWTError:
        return False


def test_worker_forked_past_max_age_after_an_emergency_rejects_the_destroyed_key(start_keyd, installed, clock):
    """The master fetched the set in ready(); keyd then rotated in an emergency (the old key is
    unpublished at once). A worker forked after max-age must not accept a token of the destroyed key
    on its first request: it fetches before that first verification."""
    keyd = start_keyd("--jwks-max-age", "1s", "--propagation-delay", "2s")
    old = keyd_token(keyd)
    with django_apps(apps=IDA, **ida_settings(keyd.jwks_url)):  # the preloaded master: no request served
        assert verifies(old)
        r = requests.post(keyd.url + "/v1/rotate", json={"emergency": True, "reason": "test: key leaked"},
                          headers={"Authorization": "Bearer " + keyd.admin_token}, timeout=5)
        assert r.status_code == 200, r.text
        new = keyd_token(keyd)
        assert verifies(old) and not verifies(new)  # the master's set: fetched before the emergency
        clock.advance(1.5)  # past keyd's max-age (1 s)

        def worker():
            start_request()  # the worker's first request, then its first verification
            if verifies(old):
                return 3  # the destroyed key accepted: the defect
            return 0 if verifies(new) else 4

        assert in_children(3, worker) == [0, 0, 0]


def test_worker_forked_within_max_age_does_not_wait_for_a_fetch(start_keyd, installed, clock):
    """A worker forked while the master's set is younger than max-age verifies at once (its refresher
    fetches in the background): the synchronous fetch is only for sets that are too old."""
    keyd = start_keyd("--jwks-max-age", "5s", "--propagation-delay", "6s")
    token = keyd_token(keyd)
    with django_apps(apps=IDA, **ida_settings(keyd.jwks_url)):
        clock.advance(4)

        def worker():
            import logging

            seen = []
            handler = logging.Handler()
            handler.emit = lambda record: seen.append(record.getMessage())
            logging.getLogger("keyd_openedx.ida.keyset").addHandler(handler)
            logging.getLogger("keyd_openedx.ida.keyset").setLevel(logging.INFO)
            start_request()
            ok = verifies(token) and any("refresher started" in m for m in seen)
            return 0 if ok and not any("before the first verification" in m for m in seen) else 3

        assert in_children(1, worker) == [0]


def test_worker_forked_after_max_staleness_keeps_valid_tokens(keyd, installed, clock):
    """The mirror image: the master's fetch is older than MAX_STALENESS when the worker is forked. The
    worker fetches before it would empty the set, so valid tokens keep verifying."""
    token = keyd_token(keyd)
    with django_apps(apps=IDA, **ida_settings(keyd.jwks_url, MAX_STALENESS=60)):
        clock.advance(120)

        def worker():
            start_request()
            follower = keyset.current()
            if follower.emptied:
                return 3  # emptied before trying keyd: the defect
            return 0 if verifies(token) and follower.age() == 0 else 4

        assert in_children(3, worker) == [0, 0, 0]


def test_worker_forked_after_max_staleness_with_keyd_down_empties_the_set(keyd, proxy_to, installed, clock):
    """When the worker's own fetch fails too, MAX_STALENESS applies as in any process: the set is
    emptied (fail closed), after that one bounded attempt."""
    from helpers import canned

    proxy = proxy_to(keyd.url)
    token = keyd_token(keyd)
    with django_apps(apps=IDA, **ida_settings(proxy.url + "/.well-known/jwks.json", MAX_STALENESS=60)):
        proxy.override = lambda m, p, h: canned(503, {"error": "backend_unavailable", "message": "x"})
        clock.advance(120)

        def worker():
            follower = keyset.current()
            before = follower.fetches
            start_request()
            return 0 if follower.emptied and not verifies(token) and follower.fetches == before + 1 else 3

        assert in_children(1, worker) == [0]


def test_concurrent_first_requests_of_a_worker_wait_for_its_fetch(start_keyd, proxy_to, installed, clock):
    """Several threads of a new worker (gthread, uWSGI threads) start requests at once while keyd is
    slow to answer: none of them verifies with the inherited set before the worker's fetch."""
    import threading
    import time

    keyd = start_keyd("--jwks-max-age", "1s", "--propagation-delay", "2s")
    proxy = proxy_to(keyd.url)
    old = keyd_token(keyd)
    with django_apps(apps=IDA, **ida_settings(proxy.url + "/.well-known/jwks.json")):
        r = requests.post(keyd.url + "/v1/rotate", json={"emergency": True, "reason": "test: key leaked"},
                          headers={"Authorization": "Bearer " + keyd.admin_token}, timeout=5)
        assert r.status_code == 200, r.text
        proxy.override = lambda m, p, h: time.sleep(0.3) if "Keyd-Instance" in h else None  # slow, then forwards
        clock.advance(1.5)

        def worker():
            accepted = []

            def request():
                start_request()
                accepted.append(verifies(old))

            threads = [threading.Thread(target=request) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(5)
            return 0 if accepted == [False] * 4 else 3

        assert in_children(1, worker) == [0]
