"""keyd-openedx plugs keyd into Open edX: the LMS signs through keyd, IDAs follow keyd's JWKS.

Nothing here runs at import time; the two Django apps do their wiring in ``ready()``.
"""

__version__ = "0.1.0"

USER_AGENT = "keyd-openedx/" + __version__


class KeydSigningError(Exception):
    """Signing through keyd failed; the LMS never falls back to a local key.

    ``code`` is keyd's error code (``issuer_not_allowed``, ``backend_unavailable``, ...) or, for
    failures before keyd answered, one of this package's (``keyd_unreachable``,
    ``vault_login_failed``, ``invalid_response``). ``message`` is one sentence a support
    engineer can act on. Neither ever holds a token or a secret ID.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return "keyd signing failed: {} ({})".format(self.message, self.code)
