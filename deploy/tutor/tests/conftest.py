"""Fixtures of tutor-contrib-keyd's tests: the plugin loaded through its entry point (harness.py),
Tutor's JWT settings built from a generated JWT_RSA_PRIVATE_KEY, and (for the settings and rollout
tests) Django configured as in openedx/tests, whose real-keyd helpers and LMS stand-in are reused."""

import json
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402

OPENEDX_TESTS = os.path.join(harness.REPO, "openedx", "tests")
sys.path[1:1] = [os.path.join(harness.REPO, "openedx"), os.path.join(OPENEDX_TESTS, "standins"), OPENEDX_TESTS]

import django  # noqa: E402
from django.conf import settings  # noqa: E402

if not settings.configured:
    settings.configure(SECRET_KEY="tutor-keyd-tests", INSTALLED_APPS=[], DATABASES={}, USE_TZ=True, JWT_AUTH={})
    django.setup()


@pytest.fixture(scope="session")
def plugin():
    return harness.plugin()


@pytest.fixture(scope="session")
def rsa_private_pem():
    """JWT_RSA_PRIVATE_KEY as Tutor generates it: a 2048-bit RSA key, PEM."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()


def _b64(n: int) -> str:
    import base64

    return base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()


def tutor_jwt_auth(pem: str, issuer: str = "http://local.openedx.io/oauth2", lms: bool = True) -> dict:
    """JWT_AUTH as an Open edX service has it under Tutor v21: edx-platform's defaults, then what
    Tutor's settings set from JWT_RSA_PRIVATE_KEY (kid "openedx"; the private JWK in the LMS and
    Studio only, the public set everywhere), issuer and audience."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(pem.encode(), password=None)
    priv, pub = key.private_numbers(), key.public_key().public_numbers()
    auth = {
        # edx-platform / edx-drf-extensions defaults the LMS stand-in reads
        "JWT_ALGORITHM": "HS256",
        "JWT_SIGNING_ALGORITHM": "RS512",
        "JWT_SUPPORTED_VERSION": "1.2.0",
        "JWT_EXPIRATION": 600,
        # what Tutor sets
        "JWT_ISSUER": issuer,
        "JWT_AUDIENCE": "openedx",
        "JWT_SECRET_KEY": "tutor-jwt-secret",
        "JWT_PUBLIC_SIGNING_JWK_SET": json.dumps(
            {"keys": [{"kid": "openedx", "kty": "RSA", "e": _b64(pub.e), "n": _b64(pub.n)}]}),
        "JWT_ISSUERS": [{"ISSUER": issuer, "AUDIENCE": "openedx", "SECRET_KEY": "tutor-openedx-secret"}],
    }
    if lms:
        auth["JWT_PRIVATE_SIGNING_JWK"] = json.dumps({
            "kid": "openedx", "kty": "RSA", "e": _b64(pub.e), "d": _b64(priv.d), "n": _b64(pub.n),
            "p": _b64(priv.p), "q": _b64(priv.q), "dq": _b64(priv.dmq1), "dp": _b64(priv.dmp1),
            "qi": _b64(priv.iqmp)})
    return auth


@pytest.fixture(scope="session")
def keyd_binary():
    """bin/keyd (make tutor-test builds it first; built here when missing)."""
    import subprocess

    from helpers import KEYD_BIN, REPO

    if not os.path.exists(KEYD_BIN):
        subprocess.run(["go", "build", "-o", KEYD_BIN, "./cmd/keyd"], cwd=REPO, check=True)
    return KEYD_BIN


@pytest.fixture
def start_keyd(keyd_binary):
    """Starts real keyd processes (local backend) on free loopback ports; stops them by PID."""
    from helpers import Keyd

    started = []

    def start(*args, env=None):
        k = Keyd(list(args), env=env)
        started.append(k)
        return k

    yield start
    for k in started:
        k.stop()
