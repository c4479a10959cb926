# keyd (tutor-contrib-keyd {{ KEYD_VERSION }}): this service verifies JWTs with keyd's keys.
# keyd-openedx's keyd_jwks app keeps JWT_AUTH["JWT_PUBLIC_SIGNING_JWK_SET"] equal to keyd's keys,
# plus the keys that setting holds here (Tutor's static key) unless KEYD_KEEP_STATIC_KEY is false.
import importlib.util as _keyd_importlib_util
if _keyd_importlib_util.find_spec("keyd_openedx") is None:
    from django.core.exceptions import ImproperlyConfigured
    raise ImproperlyConfigured(
        "tutor-contrib-keyd: the keyd-openedx package is not installed in the {{ keyd_client }} image, so "
        "{{ keyd_client }} cannot use keyd's keys; "
        {%- if keyd_client == "discovery" %}
        "add it (tutor config save --append DISCOVERY_EXTRA_PIP_REQUIREMENTS='{{ KEYD_PIP_REQUIREMENT }}'), "
        {%- endif %}
        "rebuild the image (tutor images build {{ keyd_client }}) and restart"
    )
{%- if not KEYD_KEEP_STATIC_KEY %}
# Rollout step 3 (KEYD_KEEP_STATIC_KEY: false): Tutor's static key is no longer trusted.
JWT_AUTH.pop("JWT_PUBLIC_SIGNING_JWK_SET", None)
{%- endif %}
if "keyd_openedx.ida.apps.KeydJwksConfig" not in INSTALLED_APPS:
    INSTALLED_APPS = list(INSTALLED_APPS) + ["keyd_openedx.ida.apps.KeydJwksConfig"]
KEYD_JWKS = {
    "URL": "http://keyd:8080/.well-known/jwks.json",
    "CLIENT": "{{ keyd_client }}",
}
