"""Test stand-in for Open edX's openedx.core.djangoapps.oauth_dispatch.jwt.

Written for keyd-openedx's tests, not copied from Open edX. It keeps the facts the bridge depends
on: the function signatures, _create_jwt calling _encode_and_sign through this module's global at
call time, the payload's claim names, "grant_type": grant_type or "", create_jwt_for_user never
passing a grant type, JWT_AUTH_FORCE_CREATE_ASYMMETRIC forcing the asymmetric key, and
_encode_and_sign signing with JWT_PRIVATE_SIGNING_JWK (asymmetric) or the shared secret (HS256).
"""

import hashlib
import json
import time

import jwt
from django.conf import settings
from jwt.utils import base64url_encode


def anonymous_id_for_user(user, course_id):
    """Stand-in: a stable opaque id per user."""
    seed = "{}:{}:{}".format(settings.SECRET_KEY, user.id, course_id or "")
    return hashlib.sha256(seed.encode()).hexdigest()[:32]


def _force_asymmetric():
    return bool(getattr(settings, "JWT_AUTH_FORCE_CREATE_ASYMMETRIC", False))


def _compute_time_fields(expires_in):
    now = int(time.time())
    return now, now + (expires_in or settings.JWT_AUTH["JWT_EXPIRATION"])


def create_jwt_for_user(user, secret=None, aud=None, additional_claims=None, scopes=None):
    """A JWT identifying user; symmetric unless JWT_AUTH_FORCE_CREATE_ASYMMETRIC; no grant type."""
    return _create_jwt(user, scopes=scopes, expires_in=getattr(settings, "OAUTH_ID_TOKEN_EXPIRATION", 30),
                       aud=aud, additional_claims=additional_claims, secret=secret, use_asymmetric_key=False)


def _create_jwt(user, scopes=None, expires_in=None, is_restricted=False, filters=None, aud=None,
                additional_claims=None, use_asymmetric_key=None, secret=None, grant_type=None):
    """Builds the payload and signs it through the module global _encode_and_sign."""
    use_asymmetric_key = True if _force_asymmetric() else bool(use_asymmetric_key or is_restricted)
    scopes = scopes or ["email", "profile"]
    iat, exp = _compute_time_fields(expires_in)
    payload = {
        "aud": aud or settings.JWT_AUTH["JWT_AUDIENCE"],
        "exp": exp,
        "grant_type": grant_type or "",
        "iat": iat,
        "iss": settings.JWT_AUTH["JWT_ISSUER"],
        "preferred_username": user.username,
        "scopes": scopes,
        "version": settings.JWT_AUTH["JWT_SUPPORTED_VERSION"],
        "sub": anonymous_id_for_user(user, None),
        "filters": filters or [],
        "is_restricted": is_restricted,
        "email_verified": user.is_active,
    }
    payload.update(additional_claims or {})
    if "user_id" in scopes:
        payload["user_id"] = user.id
    if "email" in scopes:
        payload["email"] = user.email
    if "profile" in scopes:
        payload.update({"name": user.get_full_name() or None, "family_name": user.last_name,
                        "given_name": user.first_name, "administrator": user.is_staff,
                        "superuser": user.is_superuser})
    # Looked up in the module's globals now, so a plugin may have replaced it.
    return _encode_and_sign(payload, use_asymmetric_key, secret)


def _encode_and_sign(payload, use_asymmetric_key, secret):
    """Signs with the LMS's private JWK (asymmetric) or its shared secret (symmetric)."""
    if use_asymmetric_key:
        key = json.loads(settings.JWT_AUTH["JWT_PRIVATE_SIGNING_JWK"])
        algorithm = settings.JWT_AUTH["JWT_SIGNING_ALGORITHM"]
    else:
        shared = secret or settings.JWT_AUTH["JWT_SECRET_KEY"]
        key = {"kty": "oct", "k": base64url_encode(shared.encode()).decode()}
        algorithm = settings.JWT_AUTH["JWT_ALGORITHM"]
    return jwt.encode(payload, jwt.PyJWK(key, algorithm).key, algorithm=algorithm)
