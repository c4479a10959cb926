"""The IDA key set against real keyd processes, with a recording proxy where a test must see headers
or make keyd look broken."""

import json
import logging
import os
import socket

import jwt as pyjwt
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from helpers import FakeClock, canned, decode_as_ida, django_apps, held_set, start_request, wait_until

from keyd_openedx import USER_AGENT
from keyd_openedx.ida import keyset
from keyd_openedx.jwks import EMPTY_SET

IDA = ["keyd_openedx.ida.apps.KeydJwksConfig"]


@pytest.fixture
def clock(monkeypatch):
    """The key set's clock for this test: install() (the app's ready()) gives it to the follower."""
    fake = FakeClock()
    monkeypatch.setattr(keyset, "CLOCK", fake)
    return fake


def instance_fetches(proxy):
    return [r for r in proxy.matching("/.well-known/jwks.json") if "Keyd-Instance" in r["headers"]]


def ida_settings(url, static=None, **jwks):
    jwt_auth = {"JWT_ISSUERS": [{"ISSUER": "http://localhost:18000/oauth2", "AUDIENCE": "openedx",
                                 "SECRET_KEY": "ida-secret"}]}
    if static is not None:
        jwt_auth["JWT_PUBLIC_SIGNING_JWK_SET"] = static
    return dict(KEYD_JWKS={"URL": url, "CLIENT": "ecommerce", "TIMEOUT": 2, **jwks}, JWT_AUTH=jwt_auth)


def keyd_token(keyd, **claims):
    import requests

    body = {"claims": {"iss": "http://localhost:18000/oauth2", "aud": "openedx", "sub": "s", "grant_type": "password",
                       **claims}, "ttl": "10m"}
    r = requests.post(keyd.url + "/v1/sign", json=body, headers={"Authorization": "Bearer " + keyd.signer_token},
                      timeout=5)
    r.raise_for_status()
    return r.json()["token"]


def test_value_is_exactly_keyd_jwks_format_edx(keyd, installed):
    with django_apps(apps=IDA, **ida_settings(keyd.jwks_url)):
        assert held_set() == keyd.edx_setting()
        assert decode_as_ida(keyd_token(keyd))["sub"] == "s"


def test_static_keys_at_startup_are_kept(start_keyd, lms_key, jwt_auth, installed, caplog):
    keyd = start_keyd()
    caplog.set_level(logging.INFO)
    with django_apps(apps=IDA, **ida_settings(keyd.jwks_url, static=lms_key["public_set"])):
        held = json.loads(held_set())
        kids = [k["kid"] for k in held["keys"]]
        assert kids == [keyd.active_kid(), lms_key["kid"]]
        assert "keeping 1 static RSA key" in caplog.text and lms_key["kid"] in caplog.text
        # A token the LMS still signs with its old private key verifies during the rollout...
        old = pyjwt.encode({"aud": "openedx", "iat": 1, "exp": 4102444800, "sub": "old"},
                           pyjwt.PyJWK(json.loads(lms_key["private"]), "RS512").key, algorithm="RS512")
        assert decode_as_ida(old)["sub"] == "old"
        assert decode_as_ida(keyd_token(keyd))["sub"] == "s"
    keyset.uninstall()
    # ...and once the static value is gone from settings, the old key is gone too.
    with django_apps(apps=IDA, **ida_settings(keyd.jwks_url)):
        assert [k["kid"] for k in json.loads(held_set())["keys"]] == [keyd.active_kid()]
        with pytest.raises(pyjwt.PyJWTError):
            decode_as_ida(old)


def test_headers_instance_only_from_the_refresher(start_keyd, proxy_to, installed, clock):
    keyd = start_keyd("--jwks-max-age", "1s", "--propagation-delay", "2s")
    proxy = proxy_to(keyd.url)
    with django_apps(apps=IDA, **ida_settings(proxy.url + "/.well-known/jwks.json")):
        first = proxy.matching("/.well-known/jwks.json")
        assert len(first) == 1  # the fetch in ready()
        h = first[0]["headers"]
        assert h["Keyd-Client"] == "ecommerce" and h["User-Agent"] == USER_AGENT and "Keyd-Instance" not in h
        call_command("keyd_jwks_status")  # a management command: no fetch, no instance
        assert len(proxy.matching("/.well-known/jwks.json")) == 1
        start_request()
        me = "{}:{}".format(socket.gethostname(), os.getpid())
        r = proxy.wait_for(lambda r: r["headers"].get("Keyd-Instance") == me, 5, "a fetch with Keyd-Instance")
        assert r["headers"]["Keyd-Client"] == "ecommerce" and r["headers"]["User-Agent"] == USER_AGENT
        # ETag/If-None-Match: keyd answers 304 and the refresher keeps pacing by max-age (1 s ± 10%).
        for i in range(5):
            clock.run_out(i)
            proxy.wait_for(lambda r: len(instance_fetches(proxy)) >= i + 1, 5, "fetch {}".format(i + 1))
        fetches = instance_fetches(proxy)
        assert all(r["headers"].get("If-None-Match") == keyset.current().etag for r in fetches)
        waits = [seconds for _, seconds in clock.waits[:5]]
        assert waits[0] == 0 and all(0.9 <= w <= 1.1 for w in waits[1:]), waits  # at once, then max-age ± 10%
        for _ in range(10):
            start_request()  # more requests never start a second refresher
        assert sum(1 for t in __import__("threading").enumerate() if t.name == "keyd-jwks-refresher") == 1


@pytest.mark.parametrize("bad", [
    b"not json at all",
    b'{"keys": []}',
    b'{"nokeys": 1}',
    b'{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",'
    b'"y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","kid":"ec"}]}',
    b'{"keys":[{"kty":"RSA","kid":"priv","n":"sXch","e":"AQAB","d":"AQAB"}]}',
    b'{"keys":[{"kty":"RSA","kid":"broken","n":"!!!","e":"AQAB"}]}',
], ids=["garbage", "empty", "not-jwks", "ec-only", "private", "bad-modulus"])
def test_unusable_jwks_is_never_installed(keyd, proxy_to, installed, bad, caplog):
    proxy = proxy_to(keyd.url)
    with django_apps(apps=IDA, **ida_settings(proxy.url + "/.well-known/jwks.json")):
        good = held_set()
        follower = keyset.current()
        proxy.override = lambda m, p, h: canned(200, bad, {"Cache-Control": "public, max-age=1", "ETag": '"x"'})
        assert follower.fetch_once(instance=True) is False
        assert held_set() == good and follower.etag != '"x"'
        assert "refusing the JWKS" in follower.last_error
        proxy.override = None
        assert follower.fetch_once(instance=True) is True
        assert held_set() == good


def test_first_fetch_failing_keeps_the_static_value(lms_key, proxy_to, keyd, installed):
    proxy = proxy_to(keyd.url)
    proxy.override = lambda m, p, h: canned(503, {"error": "backend_unavailable", "message": "x"})
    with django_apps(apps=IDA, **ida_settings(proxy.url + "/.well-known/jwks.json", static=lms_key["public_set"])):
        assert held_set() == lms_key["public_set"]
        proxy.override = None
        start_request()
        wait_until(lambda: keyd.active_kid() in held_set(), 5, "keyd's key after keyd answers")


def test_failed_fetches_back_off_doubling_up_to_max_age(start_keyd, proxy_to, installed, clock):
    keyd = start_keyd("--jwks-max-age", "3s")
    proxy = proxy_to(keyd.url)
    with django_apps(apps=IDA, **ida_settings(proxy.url + "/.well-known/jwks.json")):
        proxy.override = lambda m, p, h: canned(503, {"error": "backend_unavailable", "message": "x"}) \
            if "Keyd-Instance" in h else None
        start_request()
        waits = [clock.run_out(i)[1] for i in range(6)]
        # At once, then 1 s after the first failure, doubling, capped at max-age (3 s).
        assert waits == [0, 1, 2, 3, 3, 3], waits
        proxy.wait_for(lambda r: len(instance_fetches(proxy)) >= 6, 5, "six failed fetches")
        assert keyset.current().failures >= 5


def test_backoff_survives_thousands_of_failures(installed, clock, caplog):
    """2.0 ** (failures - 1) overflowed after 1,024 failures in a row (3.5 days down at max-age 300 s)
    and killed the refresher; the exponent is capped first, so the 1,100th failure waits max-age."""
    from helpers import free_port

    caplog.set_level(logging.ERROR)  # 1,100 warnings are not worth keeping
    url = "http://127.0.0.1:{}/.well-known/jwks.json".format(free_port())  # refused: fails fast
    with django_apps(apps=IDA, **ida_settings(url, MAX_STALENESS=10 ** 9)):
        follower = keyset.current()
        start_request()  # never fetched: the first request tries at once (fails), then the refresher
        for i in range(1100):
            clock.run_out(i)
        clock.next_wait(1100)
        assert follower.failures >= 1100 and follower.refresher_running
        assert clock.waits[-1][1] == keyset.DEFAULT_MAX_AGE
        assert not [r for r in caplog.records if "refresher error" in r.getMessage()]
        follower.failures = 10 ** 6
        assert follower.backoff() == keyset.DEFAULT_MAX_AGE


def test_staleness_empties_the_set_and_recovery_refills_it(keyd, proxy_to, installed, caplog, clock):
    proxy = proxy_to(keyd.url)
    caplog.set_level(logging.INFO)
    token = keyd_token(keyd)
    with django_apps(apps=IDA, **ida_settings(proxy.url + "/.well-known/jwks.json", MAX_STALENESS=2)):
        assert decode_as_ida(token)
        proxy.override = lambda m, p, h: canned(503, {"error": "backend_unavailable", "message": "x"})
        start_request()
        i = 0
        while held_set() != EMPTY_SET:
            assert clock.monotonic() < 1010, "the set was not emptied after MAX_STALENESS"
            clock.run_out(i)
            i += 1
            clock.next_wait(i)  # the refresher has acted on the time that passed
        assert keyset.current().emptied
        with pytest.raises(pyjwt.PyJWTError):
            decode_as_ida(token)
        assert any(r.levelno == logging.ERROR and "MAX_STALENESS" in r.getMessage() for r in caplog.records)
        with pytest.raises(CommandError):
            call_command("keyd_jwks_status")
        proxy.override = None
        while held_set() == EMPTY_SET:
            assert clock.monotonic() < 1030, "the set did not come back"
            clock.run_out(i)
            i += 1
            clock.next_wait(i)
        assert decode_as_ida(token)


def test_forked_child_gets_its_own_refresher(keyd, proxy_to, installed):
    proxy = proxy_to(keyd.url)
    with django_apps(apps=IDA, **ida_settings(proxy.url + "/.well-known/jwks.json")):
        start_request()
        parent = "{}:{}".format(socket.gethostname(), os.getpid())
        proxy.wait_for(lambda r: r["headers"].get("Keyd-Instance") == parent, 5, "the parent's refresher")
        pid = os.fork()
        if pid == 0:  # the child: what a gunicorn worker forked from a --preload master does
            code = 1
            try:
                follower = keyset.current()
                before = follower.last_success
                assert not follower.refresher_running  # threads do not survive a fork
                start_request()
                wait_until(lambda: follower.last_success != before, 5, "the child's first fetch answered")
                code = 0 if follower.refresher_running else 2
            finally:
                os._exit(code)
        child = "{}:{}".format(socket.gethostname(), pid)
        proxy.wait_for(lambda r: r["headers"].get("Keyd-Instance") == child, 10, "the child's refresher")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0


def test_jwks_status_prints_kids_age_and_etag(lms_key, keyd, installed, capsys):
    with django_apps(apps=IDA, **ida_settings(keyd.jwks_url, static=lms_key["public_set"])):
        call_command("keyd_jwks_status")
        out = capsys.readouterr().out
    assert "kid: {} (keyd)".format(keyd.active_kid()) in out
    assert "kid: {} (static)".format(lms_key["kid"]) in out
    assert "last fetch: " in out and "s ago, ETag \"" in out


def test_bad_jwks_settings_name_every_bad_value(installed):
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured) as err:
        with django_apps(apps=IDA, KEYD_JWKS={"URL": "ftp://x", "CLIENT": "has space", "MAX_STALENESS": 0}):
            pass
    for name in ("'URL'", "'CLIENT'", "'MAX_STALENESS'"):
        assert name in str(err.value)


def test_not_configured_is_not_installed(installed, caplog):
    caplog.set_level(logging.INFO)
    with django_apps(KEYD_JWKS={}, KEYD_SIGNING={}):
        assert keyset.current() is None
    assert "keyd jwks not installed" in caplog.text and "keyd signer not installed" in caplog.text




@pytest.mark.parametrize("drip", [False, True], ids=["hung", "dripping"])
def test_first_fetch_is_bounded_by_timeout(lms_key, installed, drip):
    """A hung keyd, or one dripping a byte every 0.1 s, delays startup by at most TIMEOUT; the static
    value stays."""
    import time

    from helpers import Blackhole

    hung = Blackhole(drip=drip)
    try:
        start = time.monotonic()
        with django_apps(apps=IDA, **ida_settings(hung.url + "/.well-known/jwks.json", static=lms_key["public_set"],
                                                  TIMEOUT=0.5)):
            elapsed = time.monotonic() - start
            assert held_set() == lms_key["public_set"]
            assert "ReadTimeout" in keyset.current().last_error
        assert 0.5 <= elapsed < 1.0, elapsed
    finally:
        hung.stop()
