"""Done-when run of the test project as the LMS: sign through keyd, verify through the refreshed set,
across a rotation. Prints one JSON line. Harness only: the project itself has no code."""

import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", ".."), os.path.join(HERE, "..", "standins"), os.path.join(HERE, "..")]

import django  # noqa: E402

django.setup()

import jwt as pyjwt  # noqa: E402
import requests  # noqa: E402
from django.conf import settings  # noqa: E402
from django.test import Client  # noqa: E402
from helpers import User  # noqa: E402

from keyd_openedx.jwks import verify_with_setting  # noqa: E402
from openedx.core.djangoapps.oauth_dispatch import jwt as lms_jwt  # noqa: E402


def verify(token):
    # As edx-drf-extensions: every key of JWT_AUTH["JWT_PUBLIC_SIGNING_JWK_SET"], RS256/RS512.
    return verify_with_setting(token, settings.JWT_AUTH["JWT_PUBLIC_SIGNING_JWK_SET"], "openedx")


def until(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for " + what)
        time.sleep(0.05)


def sign():
    return lms_jwt._create_jwt(User(), scopes=["email", "profile", "user_id"], use_asymmetric_key=True,
                               grant_type="password")


Client().get("/")  # a request: this process decodes, so its refresher starts
old = sign()
old_kid = pyjwt.get_unverified_header(old)["kid"]
assert verify(old)["grant_type"] == "password"
r = requests.post(os.environ["KEYD_TEST_URL"] + "/v1/rotate", data="{}", timeout=10,
                  headers={"Authorization": "Bearer " + os.environ["KEYD_TEST_ADMIN"], "Content-Type": "application/json"})
r.raise_for_status()
new_kid = r.json()["kid"]
until(lambda: new_kid in settings.JWT_AUTH["JWT_PUBLIC_SIGNING_JWK_SET"], 15, "the refreshed set")
tokens = []
until(lambda: tokens.append(sign()) or pyjwt.get_unverified_header(tokens[-1])["kid"] == new_kid, 20, "the new key")
new = tokens[-1]
print(json.dumps({"old_kid": old_kid, "new_kid": new_kid, "old": verify(old), "new": verify(new),
                  "set": settings.JWT_AUTH["JWT_PUBLIC_SIGNING_JWK_SET"]}))
