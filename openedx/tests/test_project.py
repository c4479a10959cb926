"""Done when: a Django project with the two apps and the settings of docs/openedx-integration.md, run as
its own processes against real keyd (and Vault), with no other code."""

import json
import os
import socket
import subprocess
import sys
import tempfile

import pytest
from helpers import ISSUER, Keyd, Vault, need_vault

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
PYTHONPATH = os.pathsep.join([os.path.dirname(HERE), os.path.join(HERE, "standins"), HERE])


def project_env(role, replace, jwt_auth, **extra):
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", "PYTHONPATH": PYTHONPATH,
            "KEYD_TEST_ROLE": role, "KEYD_TEST_REPLACE": json.dumps(replace),
            "KEYD_TEST_JWT_AUTH": json.dumps(jwt_auth), **extra}


def run(args, env, timeout=90):
    return subprocess.run([PYTHON] + args, env=env, cwd=HERE, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def vault_lms():
    """Its own Vault (the rotation settings differ from test_vault's keyd), bootstrapped, with the
    AppRole of section 2 of the guide and keyd in Vault mode with second-scale lifecycle settings."""
    need_vault()
    vault = Vault()
    keyd = None
    secret_file = tempfile.NamedTemporaryFile("w", prefix="keyd-secret-id-", delete=False)
    try:
        role_id, secret_id = vault.bootstrap_lms("15m", "1h")
        secret_file.write(secret_id)
        secret_file.close()
        token = lambda policy: vault.call("POST", "auth/token/create", {"policies": [policy], "ttl": "1h"})["auth"]["client_token"]  # noqa: E731
        keyd = Keyd(["--backend", "vault", "--propagation-delay", "2s", "--jwks-max-age", "1s"],
                    env={"VAULT_ADDR": vault.addr, "VAULT_TOKEN": token("keyd-server")}, local=False)
        yield {"vault": vault, "keyd": keyd, "role_id": role_id, "secret_file": secret_file.name,
               "admin": token("keyd-admin")}
    finally:
        if keyd is not None:
            keyd.stop()
        vault.stop()
        os.unlink(secret_file.name)


def lms_jwt_auth(lms_key):
    return {"JWT_ISSUER": ISSUER, "JWT_AUDIENCE": "openedx", "JWT_SUPPORTED_VERSION": "1.2.0",
            "JWT_EXPIRATION": 30, "JWT_SECRET_KEY": "lms-secret", "JWT_ALGORITHM": "HS256",
            "JWT_SIGNING_ALGORITHM": "RS512", "JWT_PRIVATE_SIGNING_JWK": lms_key["private"],
            "JWT_PUBLIC_SIGNING_JWK_SET": lms_key["public_set"]}


def test_done_when_lms_project_signs_through_keyd_and_verifies_through_refreshed_set(vault_lms, lms_key):
    keyd = vault_lms["keyd"]
    replace = {"https://keyd.internal:8080": keyd.url, "https://vault.internal:8200": vault_lms["vault"].addr,
               "<role_id>": vault_lms["role_id"], "/run/secrets/keyd-lms-secret-id": vault_lms["secret_file"]}
    env = project_env("lms", replace, lms_jwt_auth(lms_key), KEYD_TEST_URL=keyd.url,
                      KEYD_TEST_ADMIN=vault_lms["admin"])
    out = run([os.path.join("project", "lms_flow.py")], env)
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["old_kid"] != result["new_kid"]
    for t in ("old", "new"):
        assert result[t]["grant_type"] == "password" and result[t]["iss"] == ISSUER and result[t]["jti"]
    kids = [k["kid"] for k in json.loads(result["set"])["keys"]]
    assert result["old_kid"] in kids and result["new_kid"] in kids and lms_key["kid"] in kids
    assert "keyd signer installed" in out.stderr and "keyd jwks installed" in out.stderr

    # The management commands of the same project, as an operator runs them.
    check = run(["-m", "django", "keyd_check"], env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.startswith("ok: keyd signed a probe token (kid {}".format(result["new_kid"]))
    status = run(["-m", "django", "keyd_jwks_status"], env)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "kid: {} (keyd)".format(result["new_kid"]) in status.stdout
    assert "kid: {} (static)".format(lms_key["kid"]) in status.stdout

    # keyd_check fails with exit 1 and one line when the LMS's lifetime is above keyd's.
    too_long = run(["-c", "import django, sys; from django.conf import settings; django.setup(); "
                          "settings.JWT_ACCESS_TOKEN_EXPIRE_SECONDS = 7200; "
                          "from django.core.management import execute_from_command_line; "
                          "execute_from_command_line(['manage.py', 'keyd_check'])"], env)
    assert too_long.returncode == 1
    assert "JWT_ACCESS_TOKEN_EXPIRE_SECONDS (7200)" in too_long.stderr


@pytest.mark.parametrize("mode", ["preload", "no-preload"])
def test_forking_server_each_worker_gets_its_own_refresher(start_keyd, proxy_to, lms_key, mode):
    keyd = start_keyd("--jwks-max-age", "1s", "--propagation-delay", "2s")
    proxy = proxy_to(keyd.url)
    replace = {"https://keyd.internal:8080": proxy.url,
               """'{"keys": [{"kty": "RSA", "kid": "...", "n": "...", "e": "AQAB"}]}'""": repr(lms_key["public_set"])}
    jwt_auth = {"JWT_ISSUERS": [{"ISSUER": ISSUER, "AUDIENCE": "openedx", "SECRET_KEY": "ida-secret"}]}
    out = run([os.path.join("project", "workers.py"), mode], project_env("ida", replace, jwt_auth))
    assert out.returncode == 0, out.stdout + out.stderr
    pids = json.loads(out.stdout.strip().splitlines()[-1])
    host = socket.gethostname()
    fetches = proxy.matching("/.well-known/jwks.json")
    instances = {r["headers"].get("Keyd-Instance") for r in fetches} - {None}
    assert instances == {"{}:{}".format(host, p) for p in pids["workers"]}
    assert all(r["headers"]["Keyd-Client"] == "ecommerce" for r in fetches)
    without = [r for r in fetches if "Keyd-Instance" not in r["headers"]]
    assert len(without) == (1 if mode == "preload" else 2)  # the fetch in ready(): master, or each worker
    assert "keeping 1 static RSA key" in out.stderr
