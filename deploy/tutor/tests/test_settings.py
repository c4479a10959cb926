"""The rendered Python settings compile, and executed after Tutor's JWT settings (JWT_AUTH built from
JWT_RSA_PRIVATE_KEY) they yield KEYD_SIGNING / KEYD_JWKS values that keyd-openedx's own validators
accept, and keep or drop Tutor's static key as KEYD_KEEP_STATIC_KEY says."""

import copy
import importlib.util
import json
import os

import pytest
from conftest import tutor_jwt_auth
from django.core.exceptions import ImproperlyConfigured
from harness import HERE, SETTING_CHANGES, VAULT, Renderer

from keyd_openedx.conf import validate_jwks, validate_signing

SKELETON = os.path.join(HERE, "skeleton")
CASES = dict({"defaults": {}}, **SETTING_CHANGES)
IDA_PATCHES = {"credentials": "credentials-settings-common", "discovery": "discovery-common-settings",
               "ecommerce": "ecommerce-settings-common"}


def render(plugin, values, name):
    """A settings patch (name) or skeleton settings file (path), rendered and compiled; values is
    config.yml's content or an already loaded configuration."""
    cfg = values if "KEYD_SIGNER_TOKEN" in values else plugin.config(values)
    r = Renderer(plugin, cfg, [SKELETON])
    text = r.render_template(name) if "/" in name else r.patch(name)
    return text, compile(text, name, "exec")


def execute(code, module, jwt_auth, **namespace):
    ns = {"__name__": module, "JWT_AUTH": copy.deepcopy(jwt_auth), **namespace}
    exec(code, ns)
    return ns


@pytest.mark.parametrize("case", sorted(CASES))
def test_lms_and_cms_settings(plugin, rsa_private_pem, case):
    values = CASES[case]
    cfg = plugin.config(values)
    auth = tutor_jwt_auth(rsa_private_pem, cfg["JWT_COMMON_ISSUER"])
    _, lms_code = render(plugin, cfg, "apps/openedx/settings/lms")
    _, cms_code = render(plugin, cfg, "apps/openedx/settings/cms")
    lms = execute(lms_code, "lms.envs.tutor.production", auth)
    cms = execute(cms_code, "cms.envs.tutor.production", auth)
    for ns, client in ((lms, "lms"), (cms, "cms")):
        jwks = validate_jwks(ns["KEYD_JWKS"])
        assert (jwks.url, jwks.client) == ("http://keyd:8080/.well-known/jwks.json", client)
        static = ns["JWT_AUTH"].get("JWT_PUBLIC_SIGNING_JWK_SET")
        if cfg["KEYD_KEEP_STATIC_KEY"]:
            assert static == auth["JWT_PUBLIC_SIGNING_JWK_SET"]
        else:
            assert static is None
    assert "KEYD_SIGNING" not in cms
    if cfg["KEYD_SIGNING_ENABLED"]:
        signing = validate_signing(lms["KEYD_SIGNING"])
        assert signing.url == "http://keyd:8080" and signing.timeout == 2
        if cfg["KEYD_BACKEND"] == "vault":
            assert (signing.auth, signing.vault_addr, signing.role_id, signing.secret_id) == (
                "approle", VAULT["KEYD_VAULT_ADDR"], VAULT["KEYD_LMS_VAULT_ROLE_ID"], VAULT["KEYD_LMS_VAULT_SECRET_ID"])
        else:
            assert (signing.auth, signing.token) == ("token", cfg["KEYD_SIGNER_TOKEN"])
    else:
        assert "KEYD_SIGNING" not in lms
    if cfg["KEYD_KEEP_STATIC_KEY"]:
        assert lms["JWT_AUTH"]["JWT_PRIVATE_SIGNING_JWK"] == auth["JWT_PRIVATE_SIGNING_JWK"]
    else:
        assert lms["JWT_AUTH"]["JWT_PRIVATE_SIGNING_JWK"] is None


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("ida", sorted(IDA_PATCHES))
def test_ida_settings(plugin, rsa_private_pem, case, ida):
    values = CASES[case]
    cfg = plugin.config(values)
    auth = tutor_jwt_auth(rsa_private_pem, cfg["JWT_COMMON_ISSUER"], lms=False)
    _, code = render(plugin, values, IDA_PATCHES[ida])
    for apps in (("django.contrib.auth",), ["django.contrib.auth"]):  # a tuple or a list in the IDA
        ns = execute(code, ida + ".settings.production", auth, INSTALLED_APPS=apps)
        assert list(ns["INSTALLED_APPS"]) == ["django.contrib.auth", "keyd_openedx.ida.apps.KeydJwksConfig"]
        jwks = validate_jwks(ns["KEYD_JWKS"])
        assert (jwks.url, jwks.client) == ("http://keyd:8080/.well-known/jwks.json", ida)
        assert ns["JWT_AUTH"].get("JWT_PUBLIC_SIGNING_JWK_SET") == (
            auth["JWT_PUBLIC_SIGNING_JWK_SET"] if cfg["KEYD_KEEP_STATIC_KEY"] else None)
    again = execute(code, ida + ".settings.production", auth, INSTALLED_APPS=list(ns["INSTALLED_APPS"]))
    assert again["INSTALLED_APPS"].count("keyd_openedx.ida.apps.KeydJwksConfig") == 1


@pytest.mark.parametrize("name,fix", [
    ("apps/openedx/settings/lms", "tutor images build openedx"),
    ("credentials-settings-common", "tutor images build credentials"),
    ("discovery-common-settings", "tutor config save --append DISCOVERY_EXTRA_PIP_REQUIREMENTS='keyd-openedx=="),
])
def test_an_image_without_keyd_openedx_stops_with_the_fix(plugin, rsa_private_pem, monkeypatch, name, fix):
    """Without the package, the LMS would keep signing with Tutor's key and the IDA would not follow
    keyd: the service refuses to start, saying how to fix it, instead of failing later."""
    _, code = render(plugin, {"KEYD_SIGNING_ENABLED": True}, name)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "keyd_openedx" else real(n, *a))
    with pytest.raises(ImproperlyConfigured, match="keyd-openedx package is not installed") as e:
        execute(code, "lms.envs.tutor.production", tutor_jwt_auth(rsa_private_pem), INSTALLED_APPS=[])
    assert fix in str(e.value)


def test_dockerfile_patches_install_the_requirement(plugin):
    req = SETTING_CHANGES["KEYD_PIP_REQUIREMENT"]["KEYD_PIP_REQUIREMENT"]
    r = Renderer(plugin, plugin.config({"KEYD_PIP_REQUIREMENT": req}))
    assert "$PIP_COMMAND install '{}'".format(req) in r.patch("openedx-dockerfile-post-python-requirements")
    for name in ("credentials-dockerfile-post-python-requirements", "ecommerce-dockerfile-pre-assets"):
        assert "RUN pip install '{}'".format(req) in r.patch(name)


def test_json_values_are_escaped_for_python(plugin, rsa_private_pem):
    tricky = dict(VAULT, KEYD_SIGNING_ENABLED=True, KEYD_LMS_VAULT_SECRET_ID='s"e\\c\'r\net')
    _, code = render(plugin, tricky, "openedx-lms-common-settings")
    ns = execute(code, "lms.envs.tutor.production", tutor_jwt_auth(rsa_private_pem))
    assert ns["KEYD_SIGNING"]["VAULT_SECRET_ID"] == 's"e\\c\'r\net'
    assert json.loads(json.dumps(ns["KEYD_SIGNING"]))  # plain data
