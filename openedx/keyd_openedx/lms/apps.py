"""Django app of the LMS signer (edx-django-utils plugin, entry point lms.djangoapp keyd_signer)."""

from django.apps import AppConfig


class KeydSignerConfig(AppConfig):
    """Signs the LMS's asymmetric JWTs through keyd once KEYD_SIGNING is set."""

    name = "keyd_openedx.lms"
    label = "keyd_signer"
    verbose_name = "keyd signer"

    # edx-django-utils plugin_app: settings hook for the LMS (keys are edx-django-utils constants).
    plugin_app = {
        "settings_config": {
            "lms.djangoapp": {
                "common": {"relative_path": "settings"},
                "production": {"relative_path": "settings"},
            },
        },
    }

    def ready(self) -> None:
        from . import signer

        signer.install()
