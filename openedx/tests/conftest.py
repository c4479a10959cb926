"""Django settings for the in-process tests, the Open edX stand-in on sys.path, and server fixtures."""

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), os.path.join(HERE, "standins"), HERE]

import django  # noqa: E402
from django.conf import settings  # noqa: E402

from helpers import KEYD_BIN, REPO, Keyd, RecordingProxy, Vault, need_vault  # noqa: E402

if not settings.configured:
    settings.configure(
        SECRET_KEY="keyd-openedx-tests",
        INSTALLED_APPS=[],
        DATABASES={},
        USE_TZ=True,
        ROOT_URLCONF="project.urls",
        JWT_AUTH={},
    )
    django.setup()


@pytest.fixture(scope="session", autouse=True)
def keyd_binary():
    """bin/keyd (make openedx-test builds it first; built here when missing)."""
    if not os.path.exists(KEYD_BIN):
        subprocess.run(["go", "build", "-o", KEYD_BIN, "./cmd/keyd"], cwd=REPO, check=True)
    return KEYD_BIN


@pytest.fixture(scope="session")
def lms_key():
    """The LMS's own RSA key (JWT_PRIVATE_SIGNING_JWK) and its public JWK, as before keyd."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    priv = json.loads(RSAAlgorithm.to_jwk(private))
    pub = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    priv.update(kid="lms-static-1")
    pub = {"kty": "RSA", "kid": "lms-static-1", "use": "sig", "alg": "RS512", "n": pub["n"], "e": pub["e"]}
    return {"private": json.dumps(priv), "public_set": json.dumps({"keys": [pub]}), "kid": "lms-static-1"}


@pytest.fixture
def jwt_auth(lms_key):
    """The LMS's JWT_AUTH (as Open edX's settings name it)."""
    return {
        "JWT_ISSUER": "http://localhost:18000/oauth2",
        "JWT_AUDIENCE": "openedx",
        "JWT_SUPPORTED_VERSION": "1.2.0",
        "JWT_EXPIRATION": 30,
        "JWT_SECRET_KEY": "lms-shared-secret",
        "JWT_ALGORITHM": "HS256",
        "JWT_SIGNING_ALGORITHM": "RS512",
        "JWT_PRIVATE_SIGNING_JWK": lms_key["private"],
    }


@pytest.fixture
def start_keyd():
    """Starts keyd processes (local backend unless told) and stops them by PID at the end."""
    started = []

    def start(*args, env=None, local=True):
        k = Keyd(list(args), env=env, local=local)
        started.append(k)
        return k

    yield start
    for k in started:
        k.stop()


@pytest.fixture
def keyd(start_keyd):
    return start_keyd()


@pytest.fixture
def proxy_to():
    proxies = []

    def make(upstream):
        p = RecordingProxy(upstream)
        proxies.append(p)
        return p

    yield make
    for p in proxies:
        p.stop()


@pytest.fixture
def installed():
    """Undoes what the apps' ready() installed in this process (signer, refresher)."""
    yield
    from keyd_openedx.ida import keyset
    from keyd_openedx.lms import signer

    signer.uninstall()
    keyset.uninstall()


@pytest.fixture(scope="module")
def vault():
    """A real Vault dev server (bin/vault from `make vault`). Missing: skip, or fail when CI is set."""
    need_vault()
    v = Vault()
    yield v
    v.stop()
