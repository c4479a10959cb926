"""keyd_check: signs a probe token through keyd and verifies it with this process's key set."""

import time
from datetime import datetime, timezone

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ... import signer as signer_module
from .... import KeydSigningError
from ....jwks import verify_with_setting


class Command(BaseCommand):
    help = ("Signs a probe token through keyd with the LMS's issuer, audience and "
            "JWT_ACCESS_TOKEN_EXPIRE_SECONDS, verifies it with this process's "
            "JWT_PUBLIC_SIGNING_JWK_SET, and prints kid, alg and expiry. Exit 1 names the failure.")

    def handle(self, *args, **options):
        signer = signer_module.current()
        if signer is None:
            raise CommandError("the keyd signer is not installed in this LMS (KEYD_SIGNING not set, or "
                               "the Open edX JWT module is absent; see the startup log)")
        problem = signer.jwks_problem()
        if problem:
            raise CommandError(problem)
        jwt_auth = getattr(settings, "JWT_AUTH", {}) or {}
        lifetime = int(getattr(settings, "JWT_ACCESS_TOKEN_EXPIRE_SECONDS", 3600))
        now = int(time.time())
        payload = {
            "iss": jwt_auth.get("JWT_ISSUER"),
            "aud": jwt_auth.get("JWT_AUDIENCE"),
            "sub": "keyd-check",
            "grant_type": "",
            "iat": now,
            "exp": now + lifetime,
            "preferred_username": "keyd_check",
            "scopes": [],
        }
        try:
            answer = signer.sign_response(payload)
        except KeydSigningError as exc:
            if exc.code == "lifetime_too_long":
                raise CommandError("JWT_ACCESS_TOKEN_EXPIRE_SECONDS ({}) exceeds keyd's max token lifetime: "
                                   "{}".format(lifetime, exc.message))
            raise CommandError(str(exc))
        key_set = jwt_auth.get("JWT_PUBLIC_SIGNING_JWK_SET")
        try:
            verify_with_setting(answer["token"], key_set, jwt_auth.get("JWT_AUDIENCE"))
        except Exception as exc:  # any failure to verify is the finding
            raise CommandError("keyd signed with kid {} but this process's JWT_PUBLIC_SIGNING_JWK_SET does not "
                               "verify it ({}: {})".format(answer.get("kid"), type(exc).__name__, exc))
        expires = datetime.fromtimestamp(now + lifetime, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.stdout.write("ok: keyd signed a probe token (kid {}, alg {}, expires {}, lifetime {}s) and "
                          "JWT_PUBLIC_SIGNING_JWK_SET verifies it".format(answer.get("kid"), answer.get("alg"),
                                                                          answer.get("expires_at") or expires, lifetime))
