"""edx-django-utils settings hook of the LMS signer: reads KEYD_SIGNING (validated in ready())."""


def plugin_settings(settings) -> None:
    """KEYD_SIGNING comes from the LMS's YAML (production) or its settings file; absent means off."""
    if getattr(settings, "KEYD_SIGNING", None) is None:
        settings.KEYD_SIGNING = {}
