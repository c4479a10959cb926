"""The package's contract with pip and edx-django-utils: entry points, dependencies, plugin_app."""

import importlib
import os
import tomllib
import types

import pytest

from keyd_openedx.ida.apps import KeydJwksConfig
from keyd_openedx.lms.apps import KeydSignerConfig

PYPROJECT = os.path.join(os.path.dirname(__file__), "..", "pyproject.toml")


def test_pyproject_entry_points_and_dependencies():
    with open(PYPROJECT, "rb") as f:
        project = tomllib.load(f)["project"]
    assert project["name"] == "keyd-openedx"
    assert project["entry-points"]["lms.djangoapp"] == {
        "keyd_signer": "keyd_openedx.lms.apps:KeydSignerConfig",
        "keyd_jwks": "keyd_openedx.ida.apps:KeydJwksConfig",
    }
    assert project["entry-points"]["cms.djangoapp"] == {"keyd_jwks": "keyd_openedx.ida.apps:KeydJwksConfig"}
    names = sorted(d.split(">")[0].split("=")[0].split("[")[0].strip().lower() for d in project["dependencies"])
    assert names == ["django", "pyjwt"]  # HTTP is http.client (keyd_openedx/transport.py)


@pytest.mark.parametrize("config,project,setting", [
    (KeydSignerConfig, "lms.djangoapp", "KEYD_SIGNING"),
    (KeydJwksConfig, "lms.djangoapp", "KEYD_JWKS"),
    (KeydJwksConfig, "cms.djangoapp", "KEYD_JWKS"),
])
def test_plugin_settings_hook(config, project, setting):
    # edx-django-utils: plugin_app["settings_config"][project][settings_type]["relative_path"] names a
    # module of the app with plugin_settings(settings_module).
    for settings_type in ("common", "production"):
        rel = config.plugin_app["settings_config"][project][settings_type]["relative_path"]
        module = importlib.import_module("{}.{}".format(config.name, rel))
        absent = types.SimpleNamespace()
        module.plugin_settings(absent)
        assert getattr(absent, setting) == {}  # off until configured
        configured = types.SimpleNamespace(**{setting: {"URL": "https://keyd"}})
        module.plugin_settings(configured)
        assert getattr(configured, setting) == {"URL": "https://keyd"}  # the YAML's value stays
