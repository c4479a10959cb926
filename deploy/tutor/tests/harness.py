"""Render harness for tutor-contrib-keyd: loads the plugin through its `tutor.plugin.v1` entry point
and renders its patches and templates the way Tutor v21.0.8 (Ulmo) does in tutor/env.py and
tutor/config.py. Written for these tests, not copied from Tutor; the facts it follows:

- the plugin module is imported when the plugin is enabled, inside the contexts "plugins" and
  "app:<name>" (tutor/plugins/v1.py), so `do init --limit keyd` selects its init tasks;
- configuration = config.yml values, then base values (CONFIG_UNIQUE, CONFIG_OVERRIDES), then
  defaults (CONFIG_DEFAULTS); then every value is rendered as a Jinja template against the whole
  configuration, in order (render_full); then the CONFIG_LOADED action runs on a copy;
- templates and patches are plain Jinja2 with StrictUndefined, no autoescape, a FileSystemLoader
  on the ENV_TEMPLATE_ROOTS; `patch(name, separator="\\n", suffix="")` renders every ENV_PATCHES
  item of that name as its own template and joins them; `iter_values_named(prefix, suffix,
  allow_empty)` iterates config values; filters include Tutor's `random_string`, `list_if` and
  `walk_templates`; job scripts (init tasks, `do` commands) are rendered the same way before
  they run (tasks.py: run_task_from_str);
- the files under each ENV_TEMPLATE_TARGETS (src, dst) are rendered to env/<dst>/<src>.
"""

from __future__ import annotations

import copy
import importlib
import importlib.metadata
import os
import random
import string
import sys
import tempfile
import tomllib
import typing as t

import jinja2

TUTOR_VERSION = "21.0.8"
HERE = os.path.dirname(os.path.abspath(__file__))
PLUGIN_DIR = os.path.dirname(HERE)
REPO = os.path.abspath(os.path.join(PLUGIN_DIR, "..", ".."))
STANDIN = os.path.join(HERE, "standin")

# The Tutor core settings the plugin's templates and the skeletons read, with Tutor v21's defaults
# (tutor/templates/config/defaults.yml and base.yml). "JWT_RSA_PRIVATE_KEY" is added per test.
CORE_DEFAULTS: dict[str, t.Any] = {
    "DOCKER_REGISTRY": "docker.io/",
    "DOCKER_IMAGE_OPENEDX": "{{ DOCKER_REGISTRY }}overhangio/openedx:{{ TUTOR_VERSION }}",
    "DOCKER_IMAGE_PERMISSIONS": "{{ DOCKER_REGISTRY }}overhangio/openedx-permissions:{{ TUTOR_VERSION }}",
    "ENABLE_HTTPS": False,
    "ID": "{{ 24|random_string }}",
    "JWT_COMMON_AUDIENCE": "openedx",
    "JWT_COMMON_ISSUER": "{% if ENABLE_HTTPS %}https{% else %}http{% endif %}://{{ LMS_HOST }}/oauth2",
    "K8S_NAMESPACE": "openedx",
    "LMS_HOST": "local.openedx.io",
    "LOCAL_PROJECT_NAME": "tutor_local",
    "DEV_PROJECT_NAME": "tutor_dev",
    "PLUGINS": ["mfe", "indigo", "keyd"],
}


def random_string(length: int) -> str:
    """Tutor's random_string filter: ASCII letters and digits."""
    rng = random.SystemRandom()
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(length))


def list_if(services: list[tuple[str, bool]]) -> str:
    """Tutor's list_if filter: the JSON list of the names whose condition is true."""
    import json

    return json.dumps([name for name, cond in services if cond])


def _entry_point_dist(tmp: str) -> str:
    """A dist-info for tutor-contrib-keyd written from deploy/tutor/pyproject.toml, as pip would
    install it, so that importlib.metadata finds the plugin's entry point."""
    with open(os.path.join(PLUGIN_DIR, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    about: dict[str, str] = {}
    with open(os.path.join(PLUGIN_DIR, "tutorkeyd", "__about__.py"), encoding="utf-8") as f:
        exec(f.read(), about)
    dist = os.path.join(tmp, "tutor_contrib_keyd-{}.dist-info".format(about["__version__"]))
    os.makedirs(dist)
    with open(os.path.join(dist, "METADATA"), "w", encoding="utf-8") as f:
        f.write("Metadata-Version: 2.1\nName: {}\nVersion: {}\n".format(project["name"], about["__version__"]))
    with open(os.path.join(dist, "entry_points.txt"), "w", encoding="utf-8") as f:
        for group, eps in project["entry-points"].items():
            f.write("[{}]\n".format(group))
            for name, value in eps.items():
                f.write("{} = {}\n".format(name, value))
    return tmp


class Plugin:
    """The plugin, loaded once per test session through its entry point, with the stand-in hooks."""

    def __init__(self) -> None:
        import atexit
        import shutil

        dist_dir = tempfile.mkdtemp(prefix="tutor-keyd-dist-")
        atexit.register(shutil.rmtree, dist_dir, True)
        for path in (STANDIN, PLUGIN_DIR, _entry_point_dist(dist_dir)):
            if path not in sys.path:
                sys.path.insert(0, path)
        from tutor import hooks

        self.hooks = hooks
        eps = [ep for ep in importlib.metadata.entry_points(group="tutor.plugin.v1") if ep.name == "keyd"]
        if len(eps) != 1:
            raise AssertionError("expected one tutor.plugin.v1 entry point named keyd, found {}".format(eps))
        self.entry_point = eps[0]
        with hooks.Contexts.PLUGINS.enter(), hooks.Contexts.app("keyd").enter():
            self.module = importlib.import_module(self.entry_point.value)
            hooks.Filters.PLUGINS_LOADED.add_item("keyd")

    # -- configuration ----------------------------------------------------------------------

    def config(self, user: t.Optional[dict[str, t.Any]] = None, check: bool = True) -> dict[str, t.Any]:
        """The rendered configuration for config.yml values `user` (plus CONFIG_UNIQUE values, as
        `tutor config save` writes them), as tutor.config.load_full builds it."""
        cfg = dict(user or {})
        base = dict(self.hooks.Filters.CONFIG_UNIQUE.iterate())
        base.update(self.hooks.Filters.CONFIG_OVERRIDES.iterate())
        for k, v in base.items():
            cfg.setdefault(k, v)
        defaults = dict(CORE_DEFAULTS)
        defaults.update(self.hooks.Filters.CONFIG_DEFAULTS.iterate())
        for k, v in defaults.items():
            cfg.setdefault(k, v)
        cfg.setdefault("JWT_RSA_PRIVATE_KEY", "")
        for k in list(cfg):
            cfg[k] = self._render_unknown(cfg, cfg[k])
        if check:
            self.hooks.Actions.CONFIG_LOADED.do(copy.deepcopy(cfg))
        return cfg

    def _render_unknown(self, cfg: dict[str, t.Any], value: t.Any) -> t.Any:
        if isinstance(value, str):
            return Renderer(self, cfg).render_str(value)
        if isinstance(value, dict):
            return {k: self._render_unknown(cfg, v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._render_unknown(cfg, v) for v in value]
        return value

    def patches(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name, content in self.hooks.Filters.ENV_PATCHES.iterate():
            out.setdefault(name, []).append(content)
        return out


class Renderer:
    """Tutor's Renderer: Jinja2 with StrictUndefined over the template roots, Tutor's globals."""

    def __init__(self, plugin: Plugin, config: dict[str, t.Any], extra_roots: t.Sequence[str] = ()) -> None:
        self.plugin = plugin
        self.config = copy.deepcopy(config)
        roots = list(extra_roots) + plugin.hooks.Filters.ENV_TEMPLATE_ROOTS.apply([])
        self.environment = jinja2.Environment(loader=jinja2.FileSystemLoader(roots), undefined=jinja2.StrictUndefined)
        self.environment.filters.update(random_string=random_string, list_if=list_if,
                                        walk_templates=self.walk_templates)
        for name, func in plugin.hooks.Filters.ENV_TEMPLATE_FILTERS.iterate():
            self.environment.filters[name] = func
        self.environment.globals.update(
            TUTOR_VERSION=TUTOR_VERSION, TUTOR_VERSION_MAJOR=21, TUTOR_VERSION_MINOR=0, TUTOR_APP="tutor",
            TUTOR_BRANCH_IS_MAIN=False, HOST_USER_ID=1000, iter_values_named=self.iter_values_named,
            patch=self.patch, iter_mounts=lambda *_a, **_k: iter(()))
        for name, value in plugin.hooks.Filters.ENV_TEMPLATE_VARIABLES.iterate():
            self.environment.globals[name] = value
        self.rendered_patches: list[str] = []

    def iter_values_named(self, prefix: t.Optional[str] = None, suffix: t.Optional[str] = None,
                          allow_empty: bool = False) -> t.Iterator[t.Any]:
        for name, value in self.config.items():
            if prefix is not None and not name.startswith(prefix):
                continue
            if suffix is not None and not name.endswith(suffix):
                continue
            if not allow_empty and not value:
                continue
            yield value

    def walk_templates(self, subdir: str) -> t.Iterator[str]:
        for name in self.environment.loader.list_templates():
            if name.startswith(subdir):
                yield name

    def patch(self, name: str, separator: str = "\n", suffix: str = "") -> str:
        self.rendered_patches.append(name)
        rendered = separator.join(self.render_str(p) for p in self.plugin.patches().get(name, []))
        return rendered + suffix if rendered else rendered

    def render_str(self, text: str) -> str:
        return self.environment.from_string(text).render(**self.config)

    def render_template(self, name: str) -> str:
        return self.environment.get_template(name).render(**self.config)

    def save(self, root: str) -> list[str]:
        """Renders every plugin template target to root/env (tutor.env.save); returns the paths."""
        written = []
        for src, dst in self.plugin.hooks.Filters.ENV_TEMPLATE_TARGETS.iterate():
            for name in self.environment.loader.list_templates():
                if name.startswith(src):
                    path = os.path.join(root, "env", dst, name)
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    with open(path, "w", encoding="utf-8") as f:
                        f.write(self.render_template(name))
                    written.append(path)
        return written


_PLUGIN: t.Optional[Plugin] = None


def plugin() -> Plugin:
    global _PLUGIN
    if _PLUGIN is None:
        _PLUGIN = Plugin()
    return _PLUGIN


# The documented settings, each changed from its default to a value an operator could set; every
# template must render with each one (the tests render the defaults and each of these).
VAULT = {
    "KEYD_BACKEND": "vault",
    "KEYD_VAULT_ADDR": "https://vault.example.com:8200",
    "KEYD_VAULT_ROLE_ID": "6f1c1d0e-keyd-role",
    "KEYD_VAULT_SECRET_ID": "0b3a-keyd-secret",
    "KEYD_LMS_VAULT_ROLE_ID": "8e2f-lms-role",
    "KEYD_LMS_VAULT_SECRET_ID": "7d4c-lms-secret",
}
SETTING_CHANGES: dict[str, dict[str, t.Any]] = {
    "KEYD_DOCKER_IMAGE": {"KEYD_DOCKER_IMAGE": "registry.example.com/keyd:1.2.3"},
    "KEYD_TOOLS_DOCKER_IMAGE": {"KEYD_TOOLS_DOCKER_IMAGE": "registry.example.com/keyd-tools:1.2.3"},
    "KEYD_BACKEND": VAULT,
    "KEYD_ALGORITHM": {"KEYD_ALGORITHM": "RS256"},
    "KEYD_ROTATION_SCHEDULE": {"KEYD_ROTATION_SCHEDULE": "@every 720h"},
    "KEYD_EXPECTED_CLIENTS": {"KEYD_EXPECTED_CLIENTS": "lms,cms,notes"},
    "KEYD_SIGNING_ENABLED": {"KEYD_SIGNING_ENABLED": True},
    "KEYD_KEEP_STATIC_KEY": {"KEYD_SIGNING_ENABLED": True, "KEYD_KEEP_STATIC_KEY": False},
    "KEYD_PIP_REQUIREMENT": {"KEYD_PIP_REQUIREMENT": "keyd-openedx @ https://files.example.com/keyd_openedx-0.1.0-py3-none-any.whl"},
    "KEYD_VAULT_SIGNING": dict(VAULT, KEYD_SIGNING_ENABLED=True, KEYD_KEEP_STATIC_KEY=False),
    "PLUGINS_WITH_IDAS": {"PLUGINS": ["mfe", "indigo", "keyd", "credentials", "discovery", "ecommerce"]},
    "ENABLE_HTTPS": {"ENABLE_HTTPS": True, "LMS_HOST": "learn.example.com"},
}
