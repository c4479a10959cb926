"""A minimal Django project for the "Done when" test: the two apps plus the settings blocks of
docs/openedx-integration.md, executed as written there. Only the example hosts and secrets are
replaced (KEYD_TEST_REPLACE); KEYD_TEST_ROLE picks the LMS block or the IDA block."""

import json
import os
import re

_DOC = os.path.join(os.path.dirname(__file__), "..", "..", "..", "docs", "openedx-integration.md")

SECRET_KEY = "keyd-openedx-project"
DATABASES = {}
ROOT_URLCONF = "project.urls"
ALLOWED_HOSTS = ["testserver"]
USE_TZ = True
INSTALLED_APPS = []
# The JWT_AUTH the LMS or the IDA already has (issuer, audience, secrets, the old keys).
JWT_AUTH = json.loads(os.environ["KEYD_TEST_JWT_AUTH"])
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"keyd_openedx": {"handlers": ["stderr"], "level": "INFO"}},
}


def _doc_block(first_line: str) -> str:
    with open(_DOC, encoding="utf-8") as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    found = [b for b in blocks if b.startswith(first_line)]
    if len(found) != 1:
        raise RuntimeError("docs/openedx-integration.md has {} python blocks starting {!r}".format(len(found), first_line))
    return found[0]


if os.environ.get("KEYD_TEST_ROLE", "lms") == "lms":
    # In the LMS the entry points (lms.djangoapp) add these; a plain Django project lists them.
    INSTALLED_APPS += ["keyd_openedx.lms.apps.KeydSignerConfig", "keyd_openedx.ida.apps.KeydJwksConfig"]
    _code = _doc_block("# LMS settings")
else:
    _code = _doc_block("# IDA settings")
for _old, _new in json.loads(os.environ.get("KEYD_TEST_REPLACE", "{}")).items():
    if _old not in _code:
        raise RuntimeError("the docs' settings block no longer holds {!r}".format(_old))
    _code = _code.replace(_old, _new)
exec(compile(_code, _DOC, "exec"))
