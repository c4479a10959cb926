"""Malformed JWKS documents are refused as a whole, with JwksError and nothing else (issue 20, item 6):
the static value stays, and the IDA's and the LMS's ready() log and start."""

import base64
import copy
import json
import logging
import random

import jwt as pyjwt
import pytest
from helpers import canned, django_apps, held_set

from keyd_openedx.ida import keyset
from keyd_openedx.jwks import JwksError, edx_setting, rsa_keys
from keyd_openedx.lms import signer as signer_module


def b64(n: int) -> str:
    return base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def good():
    from cryptography.hazmat.primitives.asymmetric import rsa

    def key(kid):
        pub = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_numbers()
        return {"use": "sig", "kty": "RSA", "kid": kid, "alg": "RS512", "n": b64(pub.n), "e": b64(pub.e)}

    return key("good-1"), key("good-2")


MALFORMED = {
    "alg none": {"alg": "none"},
    "alg HS256": {"alg": "HS256"},
    "alg ES256 on an RSA key": {"alg": "ES256"},
    "alg empty": {"alg": ""},
    "alg null": {"alg": None},
    "alg a number": {"alg": 512},
    "alg a list": {"alg": ["RS512"]},
    "alg an object": {"alg": {"name": "RS512"}},
    "alg true": {"alg": True},
    "kid a number": {"kid": 7},
    "kid a list": {"kid": ["a"]},
    "use a number": {"use": 1},
    "key_ops a string": {"key_ops": "verify"},
    "key_ops numbers": {"key_ops": [1, 2]},
    "x5c a string": {"x5c": "MIIB"},
    "x5t a number": {"x5t": 1},
    "n a number": {"n": 65537},
    "n null": {"n": None},
    "n missing": {"n": ...},
    "n empty": {"n": ""},
    "n padded": {"n": "AQAB=="},
    "n standard base64": {"n": "ab+/cd"},
    "n tiny": {"n": "AQAB"},
    "n even": {"n": b64((1 << 2047) + 2)},
    "e missing": {"e": ...},
    "e even": {"e": "AQAA"},
    "e one": {"e": "AQ"},
    "e zero": {"e": "AA"},
    "e huge": {"e": b64((1 << 80) + 1)},
    "e a list": {"e": ["AQAB"]},
    "private d": {"d": "AQAB"},
    "symmetric k": {"k": "c2VjcmV0"},
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_key_refuses_the_document(good, name):
    bad = dict(good[1])
    for member, value in MALFORMED[name].items():
        if value is ...:
            del bad[member]
        else:
            bad[member] = value
    doc = {"keys": [good[0], bad]}
    with pytest.raises(JwksError):
        rsa_keys(json.dumps(doc))
    with pytest.raises(JwksError):
        rsa_keys(doc)


@pytest.mark.parametrize("document", [
    b"[" * 100000, b"{\"keys\":" * 50000, b"\xff\xfe", b"null", b"\"a string\"", b"[]", b"{\"keys\": \"x\"}",
    b"{\"keys\": [1]}", b"{\"keys\": [null]}", b"{\"keys\": [{\"kty\": 1}]}", b"{\"keys\": [[]]}", b"",
    b"\"\\\"[[[\\\"\"",
], ids=lambda d: repr(d[:24]))
def test_malformed_document_is_a_jwks_error(document):
    with pytest.raises(JwksError):
        rsa_keys(document)


VALUES = [None, 0, -1, 1.5, True, "", "none", "RS256", "x" * 300, "AQAB", [], ["a"], [1], {}, {"a": 1}]
MEMBERS = ["kty", "use", "kid", "alg", "n", "e", "key_ops", "x5c", "x5t", "d", "crv", "x"]


def test_fuzzed_keys_are_refused_or_usable(good):
    """Random members of a good key set to random JSON values: rsa_keys either refuses the document
    with JwksError or returns keys that PyJWT (and so edx-drf-extensions) reads without an exception."""
    rng = random.Random(20)
    refused = accepted = 0
    for _ in range(2000):
        key = copy.deepcopy(good[1])
        for _ in range(rng.randint(1, 3)):
            member = rng.choice(MEMBERS)
            if member in key and rng.random() < 0.2:
                del key[member]
            else:
                key[member] = rng.choice(VALUES)
        try:
            keys = rsa_keys({"keys": [good[0], key]})
        except JwksError:
            refused += 1
            continue
        accepted += 1
        for k in pyjwt.PyJWKSet.from_json(edx_setting(keys)).keys:
            assert k.key_type == "RSA"
    assert refused > 1000 and accepted > 10, (refused, accepted)


IDA = ["keyd_openedx.ida.apps.KeydJwksConfig"]


@pytest.mark.parametrize("name", ["alg none", "alg a list", "kid a number", "e even"])
def test_ida_and_lms_ready_log_and_start_on_a_malformed_key(keyd, proxy_to, jwt_auth, lms_key, installed, good, name,
                                                           caplog):
    bad = dict(good[1], **{k: v for k, v in MALFORMED[name].items()})
    body = json.dumps({"keys": [good[0], bad]}).encode()
    proxy = proxy_to(keyd.url)
    proxy.override = lambda m, p, h: canned(200, body, {"Cache-Control": "max-age=1"}) \
        if p.startswith("/.well-known/jwks.json") else None
    caplog.set_level(logging.INFO)
    static = lms_key["public_set"]
    settings = dict(
        KEYD_SIGNING={"URL": proxy.url, "TOKEN": keyd.signer_token, "TIMEOUT": 2},
        KEYD_JWKS={"URL": proxy.url + "/.well-known/jwks.json", "CLIENT": "lms", "TIMEOUT": 2},
        JWT_AUTH=dict(jwt_auth, JWT_PUBLIC_SIGNING_JWK_SET=static),
    )
    with django_apps(**settings):  # both apps' ready(): neither raises
        assert held_set() == static
        assert "refusing the JWKS" in keyset.current().last_error
        assert signer_module.current() is not None
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert any("cannot be used by Open edX IDAs" in e for e in errors), errors
        assert any("refusing the JWKS" in e for e in errors), errors
