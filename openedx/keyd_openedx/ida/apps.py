"""Django app of the IDA key set (INSTALLED_APPS of an IDA; lms.djangoapp and cms.djangoapp keyd_jwks)."""

from django.apps import AppConfig


class KeydJwksConfig(AppConfig):
    """Keeps JWT_AUTH["JWT_PUBLIC_SIGNING_JWK_SET"] equal to keyd's RSA keys once KEYD_JWKS is set."""

    name = "keyd_openedx.ida"
    label = "keyd_jwks"
    verbose_name = "keyd JWKS"

    plugin_app = {
        "settings_config": {
            project: {
                "common": {"relative_path": "settings"},
                "production": {"relative_path": "settings"},
            }
            for project in ("lms.djangoapp", "cms.djangoapp")
        },
    }

    def ready(self) -> None:
        from . import keyset

        keyset.install()
