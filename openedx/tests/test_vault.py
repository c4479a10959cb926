"""The LMS signer with AppRole against a real Vault (bin/vault) and keyd in Vault mode.

The role's tokens live 3 s (at most 7 s), so renewal and re-login happen during the test.
"""

import logging
import os
import tempfile
import time

import jwt as pyjwt
import pytest
from helpers import Keyd, User, canned, decode_as_ida, django_apps, wait_until

from keyd_openedx import KeydSigningError
from keyd_openedx.lms import signer as signer_module
from openedx.core.djangoapps.oauth_dispatch import jwt as lms_jwt


@pytest.fixture(scope="module")
def vault_keyd(vault):
    """keyd bootstrapped into the Vault, AppRole role `lms` (policy keyd-lms-signer), keyd serving in
    Vault mode with a keyd-server token (never root: keyd refuses a token that can sign)."""
    role_id, secret_id = vault.bootstrap_lms("3s", "7s")
    server = vault.call("POST", "auth/token/create", {"policies": ["keyd-server"], "ttl": "1h"})["auth"]["client_token"]
    keyd = Keyd(["--backend", "vault"], env={"VAULT_ADDR": vault.addr, "VAULT_TOKEN": server}, local=False)
    secret_file = tempfile.NamedTemporaryFile("w", prefix="keyd-secret-id-", delete=False)
    secret_file.write(secret_id + "\n")
    secret_file.close()
    yield {"vault": vault, "keyd": keyd, "role_id": role_id, "secret_id": secret_id,
           "secret_id_file": secret_file.name}
    keyd.stop()
    os.unlink(secret_file.name)


def approle_settings(env, jwt_auth, url=None, **signing):
    return dict(
        KEYD_SIGNING={"URL": url or env["keyd"].url, "AUTH": "approle", "VAULT_ADDR": env["vault"].addr,
                      "VAULT_ROLE_ID": env["role_id"], "VAULT_SECRET_ID_FILE": env["secret_id_file"],
                      "TIMEOUT": 2, **signing},
        KEYD_JWKS={"URL": env["keyd"].jwks_url, "CLIENT": "lms"},
        JWT_AUTH=dict(jwt_auth),
    )


def bearer_tokens(proxy):
    return {r["headers"]["Authorization"].split(" ", 1)[1] for r in proxy.matching("/v1/sign")}


def assert_no_secret(texts, secrets):
    blob = "\n".join(texts)
    for s in secrets:
        assert s and s not in blob, "a secret appears in logs or errors"


def test_approle_renews_then_logs_in_again(vault_keyd, jwt_auth, proxy_to, installed, caplog):
    caplog.set_level(logging.DEBUG)
    proxy = proxy_to(vault_keyd["keyd"].url)
    with django_apps(**approle_settings(vault_keyd, jwt_auth, url=proxy.url)):
        approle = signer_module.current().approle
        tokens, start = [], time.monotonic()

        def sign_until_relogin():
            tokens.append(lms_jwt._create_jwt(User(), use_asymmetric_key=True, grant_type="password"))
            return approle.logins >= 2 and approle.renewals >= 1

        wait_until(sign_until_relogin, 20, "a renewal and a second login", interval=0.25)
        elapsed = time.monotonic() - start
        print("AppRole ttl 3s/max 7s: {} signs in {:.1f}s, {} logins, {} renewals, {} distinct tokens".format(
            len(tokens), elapsed, approle.logins, approle.renewals, len(bearer_tokens(proxy))))
        assert approle.renewals >= 1 and approle.logins >= 2
        assert len(bearer_tokens(proxy)) >= 2  # a renewed token keeps its value; a login brings a new one
        for t in tokens:
            assert decode_as_ida(t)["grant_type"] == "password"
            assert pyjwt.get_unverified_header(t)["alg"] == "RS512"
        assert all(r["path"] == "/v1/sign" for r in proxy.matching("/v1/sign"))
    assert_no_secret([caplog.text], bearer_tokens(proxy) | {vault_keyd["secret_id"]})


def test_revoked_token_gets_one_relogin(vault_keyd, jwt_auth, proxy_to, installed, caplog):
    caplog.set_level(logging.DEBUG)
    vault = vault_keyd["vault"]
    proxy = proxy_to(vault_keyd["keyd"].url)
    errors = []
    with django_apps(**approle_settings(vault_keyd, jwt_auth, url=proxy.url, VAULT_SECRET_ID=vault_keyd["secret_id"],
                                        VAULT_SECRET_ID_FILE=None)):
        approle = signer_module.current().approle
        decode_as_ida(lms_jwt._create_jwt(User(), use_asymmetric_key=True, grant_type="password"))
        logins = approle.logins
        vault.call("POST", "auth/token/revoke-accessor", {"accessor": approle.accessor})
        n = len(proxy.matching("/v1/sign"))
        token = lms_jwt._create_jwt(User(), use_asymmetric_key=True, grant_type="password")
        assert decode_as_ida(token)["sub"]
        assert approle.logins == logins + 1
        assert len(proxy.matching("/v1/sign")) == n + 2  # the 401, then the retry with the new token

        # keyd refusing every token: one re-login, one retry, then KeydSigningError, never a loop.
        proxy.override = lambda m, p, h: canned(401, {"error": "unauthenticated", "message": "Unknown token."}) \
            if p == "/v1/sign" else None
        n, logins = len(proxy.matching("/v1/sign")), approle.logins
        with pytest.raises(KeydSigningError) as err:
            lms_jwt._create_jwt(User(), use_asymmetric_key=True, grant_type="password")
        errors.append(str(err.value))
        assert err.value.code == "unauthenticated"
        assert len(proxy.matching("/v1/sign")) == n + 2 and approle.logins == logins + 1
    assert_no_secret([caplog.text] + errors, bearer_tokens(proxy) | {vault_keyd["secret_id"]})


def test_bad_secret_id_fails_closed_without_naming_it(vault_keyd, jwt_auth, installed, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "11111111-2222-3333-4444-555555555555"
    with django_apps(**approle_settings(vault_keyd, jwt_auth, VAULT_SECRET_ID=wrong, VAULT_SECRET_ID_FILE=None)):
        with pytest.raises(KeydSigningError) as err:
            lms_jwt._create_jwt(User(), use_asymmetric_key=True, grant_type="password")
    assert err.value.code == "vault_login_failed"
    assert_no_secret([caplog.text, str(err.value)], {wrong, vault_keyd["role_id"]})
    # Django's error reports (AdminEmailHandler, the 500 page) list every frame's local variables.
    from django.views.debug import ExceptionReporter

    frames = [f for f in ExceptionReporter(None, err.type, err.value, err.tb).get_traceback_frames()
              if "keyd_openedx" in f["filename"]]
    assert "_login" in [f["function"] for f in frames]
    assert_no_secret([repr([f["vars"] for f in frames])], {wrong})


def test_login_answer_not_a_vault_body_is_a_keyd_signing_error(vault_keyd, jwt_auth, proxy_to, installed):
    """A failed login whose body is JSON but not Vault's object (a proxy's list) still fails closed
    with vault_login_failed, never another exception."""
    proxy = proxy_to(vault_keyd["vault"].addr)
    proxy.override = lambda m, p, h: canned(502, ["bad gateway"]) if p.startswith("/v1/auth/approle/login") else None
    with django_apps(**approle_settings(vault_keyd, jwt_auth, VAULT_ADDR=proxy.url)):
        with pytest.raises(KeydSigningError) as err:
            lms_jwt._create_jwt(User(), use_asymmetric_key=True, grant_type="password")
    assert err.value.code == "vault_login_failed"
    assert "HTTP 502: no error text" in str(err.value)


def test_vault_token_auth_and_keyd_check(vault_keyd, jwt_auth, installed, capsys):
    """AUTH "token": a plain Vault token of the LMS role (how keyd_check is run by an operator)."""
    from django.core.management import call_command

    vault = vault_keyd["vault"]
    lms = vault.call("POST", "auth/token/create", {"policies": ["keyd-lms-signer"], "ttl": "5m"})["auth"]["client_token"]
    settings = approle_settings(vault_keyd, jwt_auth)
    settings["KEYD_SIGNING"] = {"URL": vault_keyd["keyd"].url, "TOKEN": lms}
    with django_apps(JWT_ACCESS_TOKEN_EXPIRE_SECONDS=3600, **settings):
        call_command("keyd_check")
        assert capsys.readouterr().out.startswith("ok: keyd signed a probe token")


def test_concurrent_signs_share_one_login(vault_keyd, jwt_auth, installed):
    """The per-process token cache is thread-safe: eight threads signing at once log in once."""
    from concurrent.futures import ThreadPoolExecutor

    with django_apps(**approle_settings(vault_keyd, jwt_auth)):
        approle = signer_module.current().approle
        with ThreadPoolExecutor(8) as pool:
            tokens = list(pool.map(lambda _: lms_jwt._create_jwt(User(), use_asymmetric_key=True,
                                                                 grant_type="password"), range(8)))
        assert approle.logins == 1
        assert len({decode_as_ida(t)["jti"] for t in tokens}) == 8
