"""Observed propagation with the IDA app as the verifier: keyd holds a new key back until the IDA's own
refresher (its real fetch loop, with Keyd-Client and Keyd-Instance) has been served it."""

import os
import socket
import time

import requests
from helpers import decode_as_ida, django_apps, held_set, start_request, wait_until

IDA = ["keyd_openedx.ida.apps.KeydJwksConfig"]

GATED = ["--rotation-schedule", "@every 1h", "--propagation-delay", "2s", "--jwks-max-age", "1s",
         "--max-token-lifetime", "5s", "--clock-skew", "1s",
         "--expected-clients", "ecommerce", "--instance-window", "30s", "--activation-max-wait", "1h"]


def ida_settings(url):
    jwt_auth = {"JWT_ISSUERS": [{"ISSUER": "http://localhost:18000/oauth2", "AUDIENCE": "openedx",
                                 "SECRET_KEY": "ida-secret"}]}
    return dict(KEYD_JWKS={"URL": url, "CLIENT": "ecommerce", "TIMEOUT": 2}, JWT_AUTH=jwt_auth)


def key(keyd, version):
    return [k for k in keyd.keys() if k["version"] == version][0]


def propagation(keyd):
    r = requests.get(keyd.url + "/v1/propagation", headers={"Authorization": "Bearer " + keyd.auditor_token},
                     timeout=5)
    r.raise_for_status()
    return r.json()


def signed(keyd):
    body = {"claims": {"iss": "http://localhost:18000/oauth2", "aud": "openedx", "sub": "s", "grant_type": "password"}}
    r = requests.post(keyd.url + "/v1/sign", json=body, headers={"Authorization": "Bearer " + keyd.signer_token},
                      timeout=5)
    r.raise_for_status()
    return r.json()


def test_activation_waits_for_the_ida_refresher(start_keyd, installed):
    keyd = start_keyd(*GATED)
    new = keyd.rotate()
    assert new["version"] == 2 and new["state"] == "pending"
    activates = time.mktime(time.strptime(key(keyd, 2)["activates_at"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    with django_apps(apps=IDA, **ida_settings(keyd.jwks_url)):
        # ready()'s one-off fetch carries no Keyd-Instance: it holds nothing back and releases nothing.
        # Observe past activates_at plus a flush (a fixed window: nothing happens to wait for).
        time.sleep(max(0, activates + 1.5 - time.time()))
        assert key(keyd, 2)["state"] == "pending"
        assert signed(keyd)["kid"] != new["kid"]
        p = propagation(keyd)
        assert p["pending"]["version"] == 2 and not p["pending"]["confirmed"]
        assert p["clients"][0]["client"] == "ecommerce" and p["clients"][0]["instances"] == []

        # The process that decodes starts its refresher: its fetches carry Keyd-Instance and release the key.
        start_request()
        wait_until(lambda: key(keyd, 2)["state"] == "active", 10, "the key activates once the IDA holds it")
        me = "{}:{}".format(socket.gethostname(), os.getpid())
        client = propagation(keyd)["clients"][0]
        assert [i["instance"] for i in client["instances"]] == [me]
        assert client["instances"][0]["max_version"] == 2
        # The IDA already holds the key that now signs: its first token verifies.
        tok = signed(keyd)
        assert tok["kid"] == new["kid"] and new["kid"] in held_set()
        assert decode_as_ida(tok["token"])["sub"] == "s"
