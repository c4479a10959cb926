"""edx-django-utils settings hook of the IDA key set: reads KEYD_JWKS (validated in ready())."""


def plugin_settings(settings) -> None:
    """KEYD_JWKS comes from the YAML (production) or the settings file; absent means off."""
    if getattr(settings, "KEYD_JWKS", None) is None:
        settings.KEYD_JWKS = {}
