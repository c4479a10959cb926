"""The four-step rollout against a real keyd process (local backend), with the settings the plugin
renders for each step: 1 publish (KEYD_SIGNING_ENABLED false), 2 sign (true), 3 drop the static key
(KEYD_KEEP_STATIC_KEY false), 4 rotate (`do keyd rotate`). At each step the IDA's key set
(keyd-openedx's keyd_jwks app, started with that step's credentials settings) verifies every
asymmetric token that step's LMS can issue, and the previous step's tokens; so do the LMS's and
Studio's own key sets. Step 0 is Tutor without keyd: the LMS signs with JWT_RSA_PRIVATE_KEY."""

import json

import jwt as pyjwt
import pytest
from conftest import tutor_jwt_auth
from harness import Renderer
from helpers import User, decode_as_ida, django_apps, held_set, wait_until

from keyd_openedx.ida import keyset
from keyd_openedx.lms import signer
from openedx.core.djangoapps.oauth_dispatch import jwt as lms_jwt

LMS_APPS = ["keyd_openedx.lms.apps.KeydSignerConfig", "keyd_openedx.ida.apps.KeydJwksConfig"]
IDA_APPS = ["keyd_openedx.ida.apps.KeydJwksConfig"]
STEPS = [
    ("1 publish", {"KEYD_SIGNING_ENABLED": False, "KEYD_KEEP_STATIC_KEY": True}),
    ("2 sign", {"KEYD_SIGNING_ENABLED": True, "KEYD_KEEP_STATIC_KEY": True}),
    ("3 drop the static key", {"KEYD_SIGNING_ENABLED": True, "KEYD_KEEP_STATIC_KEY": False}),
    ("4 rotate", {"KEYD_SIGNING_ENABLED": True, "KEYD_KEEP_STATIC_KEY": False}),
]


def keyd_environment(plugin, cfg):
    """The environment the plugin gives the keyd service (local-docker-compose-services), without
    the role tokens (the test keyd gets its own) and the data dir."""
    import yaml

    service = yaml.safe_load(Renderer(plugin, cfg).patch("local-docker-compose-services"))["keyd"]
    return {k: v for k, v in service["environment"].items() if not k.endswith("_TOKEN")}


def settings_of(plugin, cfg, patch, module, jwt_auth, keyd_url, **namespace):
    """Executes a rendered settings patch after Tutor's JWT settings; keyd's in-cluster address
    (http://keyd:8080) becomes the test keyd's. Returns the Django settings it defines."""
    text = Renderer(plugin, cfg).patch(patch).replace("http://keyd:8080", keyd_url)
    ns = {"__name__": module, "JWT_AUTH": json.loads(json.dumps(jwt_auth)), **namespace}
    exec(compile(text, patch, "exec"), ns)
    return {k: v for k, v in ns.items() if k.isupper()}


def lms_tokens():
    """Every kind of asymmetric JWT the LMS issues: a password grant (mobile), another grant, a
    restricted application's token, and create_jwt_for_user forced asymmetric (grant_type "")."""
    from django.test import override_settings

    out = [lms_jwt._create_jwt(User(), use_asymmetric_key=True, grant_type="password"),
           lms_jwt._create_jwt(User(id=8, username="ada"), use_asymmetric_key=True, grant_type="authorization_code"),
           lms_jwt._create_jwt(User(id=9), is_restricted=True, grant_type="password", scopes=["email"])]
    with override_settings(JWT_AUTH_FORCE_CREATE_ASYMMETRIC=True):
        out.append(lms_jwt.create_jwt_for_user(User(id=10), aud="openedx"))
    return out


STATIC_SET = None  # Tutor's public key set, set by the test


def kid(token):
    """keyd's kid of a keyd-signed token; "openedx" for one Tutor's key signed (the LMS stand-in,
    like edx-platform without JWT_AUTH_ADD_KID_HEADER, writes no kid)."""
    from keyd_openedx.jwks import verify_with_setting

    found = pyjwt.get_unverified_header(token).get("kid")
    if found is None:
        verify_with_setting(token, STATIC_SET, None)
        return "openedx"
    return found


@pytest.fixture
def cleanup():
    yield
    signer.uninstall()
    keyset.uninstall()


def test_each_step_verifies_its_own_and_the_previous_steps_tokens(plugin, rsa_private_pem, start_keyd, cleanup):
    # keyd as the plugin configures it (issuer, algorithm, schedule), with short lifecycle times and
    # no propagation gating (KEYD_EXPECTED_CLIENTS empty: no Studio or IDA process runs here).
    env = keyd_environment(plugin, plugin.config({"KEYD_EXPECTED_CLIENTS": ""}))
    assert env["KEYD_ISSUER"] == "http://local.openedx.io/oauth2" and env["KEYD_ALGORITHM"] == "RS512"
    keyd = start_keyd("--propagation-delay", "3s", "--jwks-max-age", "1s", env=env)
    base = {"KEYD_SIGNER_TOKEN": keyd.signer_token, "KEYD_ADMIN_TOKEN": keyd.admin_token,
            "KEYD_AUDITOR_TOKEN": keyd.auditor_token, "KEYD_EXPECTED_CLIENTS": ""}
    issuer = plugin.config(base)["JWT_COMMON_ISSUER"]
    lms_auth = tutor_jwt_auth(rsa_private_pem, issuer)
    ida_auth = tutor_jwt_auth(rsa_private_pem, issuer, lms=False)
    global STATIC_SET
    STATIC_SET = ida_auth["JWT_PUBLIC_SIGNING_JWK_SET"]

    # Step 0: Tutor alone. The LMS signs with JWT_RSA_PRIVATE_KEY (kid "openedx").
    with django_apps(apps=[], JWT_AUTH=json.loads(json.dumps(lms_auth))):
        previous = lms_tokens()
    assert {kid(t) for t in previous} == {"openedx"}

    for step, switches in STEPS:
        cfg = plugin.config(dict(base, **switches))
        if step.startswith("4"):
            pending = keyd.rotate()  # `tutor local do keyd rotate`
            assert pending["state"] == "pending"
        lms = settings_of(plugin, cfg, "openedx-common-settings", "lms.envs.tutor.production", lms_auth, keyd.url)
        lms.update(settings_of(plugin, cfg, "openedx-lms-common-settings", "lms.envs.tutor.production",
                               lms["JWT_AUTH"], keyd.url))
        assert ("KEYD_SIGNING" in lms) is switches["KEYD_SIGNING_ENABLED"], step
        with django_apps(apps=LMS_APPS, **lms):
            tokens = lms_tokens()
            if step.startswith("4"):
                # the new key signs once its propagation delay has passed; then the LMS uses it
                wait_until(lambda: kid(lms_tokens()[0]) == pending["kid"], 10, "the rotated key to sign", 0.2)
                tokens += lms_tokens()
            for t in tokens + previous:
                assert decode_as_ida(t)["iss"] == issuer, step  # the LMS's own verifier
        signer.uninstall()
        keyset.uninstall()

        kids = {kid(t) for t in tokens}
        if switches["KEYD_SIGNING_ENABLED"]:
            assert "openedx" not in kids, step  # every asymmetric token is keyd's
            assert kids <= {k["kid"] for k in keyd.keys()}, step
        else:
            assert kids == {"openedx"}, step

        for ida, patch in (("credentials", "credentials-settings-common"), ("discovery", "discovery-common-settings"),
                           ("ecommerce", "ecommerce-settings-common")):
            ida_settings = settings_of(plugin, cfg, patch, ida + ".settings.production", ida_auth, keyd.url,
                                       INSTALLED_APPS=[])
            assert ida_settings.pop("INSTALLED_APPS") == IDA_APPS
            with django_apps(apps=IDA_APPS, **ida_settings):
                held = [k["kid"] for k in json.loads(held_set())["keys"]]
                assert ("openedx" in held) is switches["KEYD_KEEP_STATIC_KEY"], (step, ida, held)
                for t in tokens + previous:
                    claims = decode_as_ida(t)
                    assert claims["aud"] == "openedx" and "grant_type" in claims, (step, ida)
            keyset.uninstall()

        if step.startswith("3"):
            # From step 3 on nothing trusts Tutor's key: a token it signed no longer verifies.
            with django_apps(apps=IDA_APPS, **settings_of(plugin, cfg, "credentials-settings-common",
                                                          "credentials.settings.production", ida_auth, keyd.url,
                                                          INSTALLED_APPS=[])):
                stale = pyjwt.encode({"aud": "openedx", "iss": issuer, "iat": 1, "exp": 4102444800, "sub": "x",
                                      "grant_type": "password"},
                                     pyjwt.PyJWK(json.loads(lms_auth["JWT_PRIVATE_SIGNING_JWK"]), "RS512").key,
                                     algorithm="RS512", headers={"kid": "openedx"})
                with pytest.raises(pyjwt.PyJWTError):
                    decode_as_ida(stale)
            keyset.uninstall()
        previous = tokens


def test_step_3_lms_cannot_sign_with_tutors_key_when_keyd_is_down(plugin, rsa_private_pem, start_keyd, cleanup):
    """Fail closed: with the static key dropped, a keyd outage means no token, never a Tutor-key one."""
    cfg = plugin.config({"KEYD_SIGNING_ENABLED": True, "KEYD_KEEP_STATIC_KEY": False})
    keyd = start_keyd(env=keyd_environment(plugin, cfg))
    cfg["KEYD_SIGNER_TOKEN"] = keyd.signer_token
    lms_auth = tutor_jwt_auth(rsa_private_pem, cfg["JWT_COMMON_ISSUER"])
    lms = settings_of(plugin, cfg, "openedx-common-settings", "lms.envs.tutor.production", lms_auth, keyd.url)
    lms.update(settings_of(plugin, cfg, "openedx-lms-common-settings", "lms.envs.tutor.production",
                           lms["JWT_AUTH"], keyd.url))
    assert lms["JWT_AUTH"]["JWT_PRIVATE_SIGNING_JWK"] is None
    with django_apps(apps=LMS_APPS, **lms):
        keyd.process.proc.kill()  # keyd is gone
        keyd.process.proc.wait()
        from keyd_openedx import KeydSigningError

        with pytest.raises(KeydSigningError):
            lms_jwt._create_jwt(User(), use_asymmetric_key=True, grant_type="password")
