"""The LMS signer against real keyd processes (local backend, signer token)."""

import json
import logging
import time

import jwt as pyjwt
import pytest
import requests
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError
from helpers import Blackhole, User, canned, decode_as_ida, django_apps, held_set, start_request, wait_until

from keyd_openedx import KeydSigningError
from openedx.core.djangoapps.oauth_dispatch import jwt as lms_jwt


def lms_settings(keyd, jwt_auth, url=None, token=None, timeout=2, jwks_url=None, **extra):
    return dict(
        KEYD_SIGNING={"URL": url or keyd.url, "TOKEN": token or keyd.signer_token, "TIMEOUT": timeout},
        KEYD_JWKS={"URL": jwks_url or keyd.jwks_url, "CLIENT": "lms", "TIMEOUT": 2},
        JWT_AUTH=dict(jwt_auth),
        **extra,
    )


@pytest.fixture
def record_payloads(installed):
    """Wraps the installed _encode_and_sign to record what _create_jwt handed it."""

    class Seen(list):
        inner = None

        def wrap(self):
            inner = self.inner = lms_jwt._encode_and_sign

            def recording(payload, use_asymmetric_key, secret):
                self.append((json.loads(json.dumps(payload)), use_asymmetric_key))
                return inner(payload, use_asymmetric_key, secret)

            lms_jwt._encode_and_sign = recording

    seen = Seen()
    yield seen
    if seen.inner is not None:
        lms_jwt._encode_and_sign = seen.inner


def test_password_grant_claims_are_exactly_what_create_jwt_built(keyd, jwt_auth, record_payloads, caplog):
    caplog.set_level(logging.DEBUG)
    with django_apps(**lms_settings(keyd, jwt_auth)):
        assert "keyd signer installed" in caplog.text
        record_payloads.wrap()
        token = lms_jwt._create_jwt(User(), scopes=["email", "profile", "user_id"], expires_in=600,
                                    use_asymmetric_key=True, grant_type="password", filters=["user:me"])
        payload, asymmetric = record_payloads[0]
        assert asymmetric is True
        claims = decode_as_ida(token)
        jti = claims.pop("jti")
        assert claims == payload  # every claim the LMS built, as built (iat/exp included: no ttl)
        assert len(pyjwt.utils.base64url_decode(jti)) == 16
        header = pyjwt.get_unverified_header(token)
        assert header == {"alg": "RS512", "kid": keyd.active_kid(), "typ": "JWT"}
        assert payload["grant_type"] == "password"
    assert keyd.signer_token not in caplog.text  # urllib3's debug lines included


def test_empty_grant_type_is_signed_by_keyd(keyd, jwt_auth, record_payloads):
    # create_jwt_for_user passes no grant type; with JWT_AUTH_FORCE_CREATE_ASYMMETRIC it reaches keyd.
    with django_apps(JWT_AUTH_FORCE_CREATE_ASYMMETRIC=True, **lms_settings(keyd, jwt_auth)):
        record_payloads.wrap()
        token = lms_jwt.create_jwt_for_user(User())
        payload, asymmetric = record_payloads[0]
        assert asymmetric is True and payload["grant_type"] == ""
        claims = decode_as_ida(token)
        claims.pop("jti")
        assert claims == payload


def test_symmetric_path_never_reaches_keyd(keyd, jwt_auth, proxy_to, installed):
    proxy = proxy_to(keyd.url)
    with django_apps(**lms_settings(keyd, jwt_auth, url=proxy.url)):
        token = lms_jwt.create_jwt_for_user(User())  # symmetric: use_asymmetric_key=False
        assert pyjwt.get_unverified_header(token)["alg"] == "HS256"
        claims = pyjwt.decode(token, "lms-shared-secret", algorithms=["HS256"], audience="openedx")
        assert claims["grant_type"] == ""
        with pytest.raises(pyjwt.PyJWTError):
            decode_as_ida(token)  # the IDA's key set never verifies a symmetric token
        assert proxy.matching("/v1/sign") == []
        lms_jwt._create_jwt(User(), use_asymmetric_key=True, grant_type="password")
        assert len(proxy.matching("/v1/sign")) == 1
        sign = proxy.matching("/v1/sign")[0]
        assert sign["headers"]["Content-Type"] == "application/json"


def test_rotation_old_and_new_tokens_verify(start_keyd, jwt_auth, installed):
    keyd = start_keyd("--propagation-delay", "2s", "--jwks-max-age", "1s")
    with django_apps(**lms_settings(keyd, jwt_auth)):
        start_request()  # this process decodes: its refresher starts
        old = lms_jwt._create_jwt(User(), use_asymmetric_key=True, grant_type="password", expires_in=600)
        old_kid = pyjwt.get_unverified_header(old)["kid"]
        new_kid = keyd.rotate()["kid"]
        wait_until(lambda: new_kid in held_set(), 10, "the refresher to install the new key")
        wait_until(lambda: keyd.active_kid() == new_kid, 15, "the new key to activate")
        new = lms_jwt._create_jwt(User(), use_asymmetric_key=True, grant_type="password", expires_in=600)
        assert pyjwt.get_unverified_header(new)["kid"] == new_kid != old_kid
        assert decode_as_ida(old)["grant_type"] == "password"
        assert decode_as_ida(new)["grant_type"] == "password"
        assert held_set() == keyd.edx_setting()


@pytest.mark.parametrize("hung", [False, True], ids=["refused", "hung"])
def test_keyd_down_fails_closed_within_bound(jwt_auth, installed, hung, lms_key):
    timeout = 0.5
    server = Blackhole()
    url = server.url
    if not hung:
        server.stop()  # nothing listens any more: connection refused
    try:
        settings = dict(KEYD_SIGNING={"URL": url, "TOKEN": "t-secret-value", "TIMEOUT": timeout},
                        JWT_AUTH=dict(jwt_auth))
        with django_apps(apps=["keyd_openedx.lms.apps.KeydSignerConfig"], **settings):
            start, before = time.monotonic(), len(server.accepted)
            with pytest.raises(KeydSigningError) as err:
                lms_jwt._create_jwt(User(), use_asymmetric_key=True, grant_type="password")
            elapsed = time.monotonic() - start
        print("keyd down ({}): KeydSigningError after {:.3f}s (bound {:.1f}s)".format(
            "hung" if hung else "refused", elapsed, 2 * timeout + 0.5))
        assert err.value.code == "keyd_unreachable"
        assert elapsed < 2 * timeout + 0.5
        assert elapsed >= 0.1  # the one retry waited 100 ms
        if hung:
            assert elapsed >= 2 * timeout
            assert len(server.accepted) - before == 2  # one attempt, one retry
        assert "t-secret-value" not in str(err.value)
    finally:
        server.stop()


def test_dripping_keyd_is_bounded_by_timeout(jwt_auth, installed):
    """TIMEOUT bounds each attempt as a whole, not each socket read: a peer that sends one byte every
    0.1 s never holds the LMS longer than the two attempts."""
    timeout = 0.5
    server = Blackhole(drip=True)
    try:
        settings = dict(KEYD_SIGNING={"URL": server.url, "TOKEN": "t-secret-value", "TIMEOUT": timeout},
                        JWT_AUTH=dict(jwt_auth))
        with django_apps(apps=["keyd_openedx.lms.apps.KeydSignerConfig"], **settings):
            start = time.monotonic()
            with pytest.raises(KeydSigningError) as err:
                lms_jwt._create_jwt(User(), use_asymmetric_key=True, grant_type="password")
            elapsed = time.monotonic() - start
        assert err.value.code == "keyd_unreachable"
        assert elapsed < 2 * timeout + 0.5, elapsed
    finally:
        server.stop()


def test_token_mode_401_is_not_retried_and_names_nothing_secret(keyd, jwt_auth, proxy_to, installed, caplog):
    caplog.set_level(logging.DEBUG)
    proxy = proxy_to(keyd.url)
    with django_apps(**lms_settings(keyd, jwt_auth, url=proxy.url, token="wrong-token-abc123")):
        with pytest.raises(KeydSigningError) as err:
            lms_jwt._create_jwt(User(), use_asymmetric_key=True, grant_type="password")
    assert err.value.code == "unauthenticated"
    assert len(proxy.matching("/v1/sign")) == 1
    assert "wrong-token-abc123" not in str(err.value) + repr(err.value) + caplog.text


def test_422_names_keyds_code_and_message(keyd, jwt_auth, installed):
    claims = {"iss": "https://not-an-issuer.example", "aud": "openedx", "sub": "x", "grant_type": "password"}
    direct = requests.post(keyd.url + "/v1/sign", json={"claims": claims},
                           headers={"Authorization": "Bearer " + keyd.signer_token}, timeout=5)
    assert direct.status_code == 422
    with django_apps(**lms_settings(keyd, dict(jwt_auth, JWT_ISSUER="https://not-an-issuer.example"))):
        with pytest.raises(KeydSigningError) as err:
            lms_jwt._create_jwt(User(), use_asymmetric_key=True, grant_type="password")
    assert err.value.code == direct.json()["error"] == "issuer_not_allowed"
    assert err.value.message == direct.json()["message"]
    assert "issuer_not_allowed" in str(err.value) and direct.json()["message"] in str(err.value)

    with django_apps(**lms_settings(keyd, jwt_auth)):
        with pytest.raises(KeydSigningError) as err:
            lms_jwt._create_jwt(User(), use_asymmetric_key=True, grant_type="password", expires_in=7200)
    assert err.value.code == "lifetime_too_long"


def test_503_is_retried_once_after_100ms(keyd, jwt_auth, proxy_to, installed):
    proxy = proxy_to(keyd.url)
    answers = [canned(503, {"error": "backend_unavailable", "message": "Vault is unreachable."})]

    def first_sign_fails(method, path, headers):
        if path == "/v1/sign" and answers:
            return answers.pop()
        return None

    proxy.override = first_sign_fails
    with django_apps(**lms_settings(keyd, jwt_auth, url=proxy.url)):
        token = lms_jwt._create_jwt(User(), use_asymmetric_key=True, grant_type="password")
        assert decode_as_ida(token)["sub"]
        signs = proxy.matching("/v1/sign")
        assert len(signs) == 2 and signs[1]["time"] - signs[0]["time"] >= 0.1

        proxy.override = lambda m, p, h: canned(503, {"error": "backend_unavailable", "message": "Vault is down."}) \
            if p == "/v1/sign" else None
        with pytest.raises(KeydSigningError) as err:
            lms_jwt._create_jwt(User(), use_asymmetric_key=True, grant_type="password")
        assert err.value.code == "backend_unavailable" and err.value.message == "Vault is down."
        assert len(proxy.matching("/v1/sign")) == 4  # 2 + one attempt and one retry, never more


def test_bad_settings_name_every_bad_value(jwt_auth, installed):
    bad = {"URL": "keyd.internal", "AUTH": "password", "TIMEOUT": -1, "TOKEN": "s3cr3t-token", "TIMEOUTS": 2}
    with pytest.raises(ImproperlyConfigured) as err:
        with django_apps(KEYD_SIGNING=bad, JWT_AUTH=dict(jwt_auth)):
            pass
    text = str(err.value)
    for name in ("'URL'", "'AUTH'", "'TIMEOUT'", "'TIMEOUTS'"):
        assert name in text
    assert "s3cr3t-token" not in text


def test_module_absent_is_a_warning(keyd, jwt_auth, installed, caplog, monkeypatch):
    from keyd_openedx.lms import signer

    monkeypatch.setattr(signer, "JWT_MODULE", "openedx.core.djangoapps.oauth_dispatch.absent")
    caplog.set_level(logging.INFO)
    with django_apps(**lms_settings(keyd, jwt_auth)):
        assert "keyd signer not installed" in caplog.text
        assert signer.current() is None
        # Not installed: the LMS's own key signs, as before the plugin.
        token = lms_jwt._create_jwt(User(), use_asymmetric_key=True, grant_type="password")
        assert pyjwt.get_unverified_header(token)["alg"] == "RS512"
        assert "kid" not in pyjwt.get_unverified_header(token)
    assert any(r.levelno == logging.WARNING and "not installed" in r.getMessage() for r in caplog.records)


def test_module_present_but_failing_to_import_is_not_absent(keyd, jwt_auth, installed, monkeypatch, tmp_path):
    """Only a missing Open edX module is a warning; one that exists but cannot be imported (a missing
    dependency) stops the LMS instead of leaving it signing with its local key."""
    from keyd_openedx.lms import signer

    (tmp_path / "keyd_broken_jwt.py").write_text("import keyd_absent_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(signer, "JWT_MODULE", "keyd_broken_jwt")
    with pytest.raises(ImportError):
        with django_apps(**lms_settings(keyd, jwt_auth)):
            pass
    assert signer.current() is None


def test_keyd_check_prints_kid_alg_expiry(keyd, jwt_auth, installed, capsys):
    with django_apps(JWT_ACCESS_TOKEN_EXPIRE_SECONDS=900, **lms_settings(keyd, jwt_auth)):
        call_command("keyd_check")
        out = capsys.readouterr().out
        assert out.startswith("ok:") and keyd.active_kid() in out and "RS512" in out and "lifetime 900s" in out
    with django_apps(JWT_ACCESS_TOKEN_EXPIRE_SECONDS=7200, **lms_settings(keyd, jwt_auth)):
        with pytest.raises(CommandError) as err:
            call_command("keyd_check")
        assert "JWT_ACCESS_TOKEN_EXPIRE_SECONDS (7200)" in str(err.value)


def test_no_rsa_key_in_keyd_is_an_error_at_ready_and_in_keyd_check(start_keyd, jwt_auth, lms_key, installed, caplog):
    keyd = start_keyd("--algorithm", "ES256")
    caplog.set_level(logging.INFO)
    static = lms_key["public_set"]
    with django_apps(**lms_settings(keyd, dict(jwt_auth, JWT_PUBLIC_SIGNING_JWK_SET=static))):
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert any("no RSA key" in e for e in errors), errors
        with pytest.raises(CommandError) as err:
            call_command("keyd_check")
        assert "no RSA key" in str(err.value)
        # The IDA side never installed keyd's EC-only set: the static RSA key is what it holds.
        assert json.loads(held_set())["keys"][0]["kid"] == lms_key["kid"]
        # And signing still goes to keyd (fail closed is about failures, not key types).
        token = lms_jwt._create_jwt(User(), use_asymmetric_key=True, grant_type="password")
        assert pyjwt.get_unverified_header(token)["alg"] == "ES256"


def test_error_reports_hide_the_token_in_frame_locals(keyd, jwt_auth, installed):
    """Django's error reports (AdminEmailHandler, the 500 page) list every frame's local variables;
    the signer's frames must show none of the bearer token."""
    from django.views.debug import ExceptionReporter

    with django_apps(**lms_settings(keyd, jwt_auth, token="wrong-token-frame-locals")):
        with pytest.raises(KeydSigningError) as err:
            lms_jwt._create_jwt(User(), use_asymmetric_key=True, grant_type="password")
    frames = [f for f in ExceptionReporter(None, err.type, err.value, err.tb).get_traceback_frames()
              if "keyd_openedx" in f["filename"]]
    assert "sign_response" in [f["function"] for f in frames]
    assert "wrong-token-frame-locals" not in repr([f["vars"] for f in frames])


def test_token_with_a_line_break_fails_closed_without_naming_it(keyd, jwt_auth, installed, caplog):
    """A token that cannot be sent as a header (a line break from a file) is one KeydSigningError,
    never retried, and its value appears nowhere."""
    caplog.set_level(logging.DEBUG)
    bad = keyd.signer_token + "\nX-Injected: 1"
    with django_apps(**lms_settings(keyd, jwt_auth, token=bad)):
        with pytest.raises(KeydSigningError) as err:
            lms_jwt._create_jwt(User(), use_asymmetric_key=True, grant_type="password")
    assert err.value.code == "keyd_unreachable" and "InvalidRequest" in err.value.message
    assert keyd.signer_token not in str(err.value) + repr(err.value) + caplog.text
    assert "retrying" not in caplog.text
