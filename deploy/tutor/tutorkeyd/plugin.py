"""tutor-contrib-keyd: runs keyd next to Open edX and plugs it into the LMS, Studio and the IDAs.

Written for Tutor v21 (Ulmo) and its v1 plugin API (tutor.hooks). What it declares:
- settings (KEYD_*), the local backend's role tokens generated once (CONFIG_UNIQUE);
- patches: the keyd service and its keyd-job (local, dev, k8s), keyd-openedx in the openedx image,
  the LMS/Studio settings and the settings of the credentials, discovery and ecommerce IDAs;
- the init task (`tutor local do init --limit keyd`) and `tutor local do keyd rotate|status`;
- a check of the settings each time Tutor loads its configuration, so a bad value stops
  `tutor config save` with one message naming every problem.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import typing as t
from glob import glob
from importlib.resources import files

import click
from tutor import hooks

from .__about__ import KEYD_OPENEDX_VERSION, __version__

HERE = str(files("tutorkeyd"))

# The IDA plugins whose settings get KEYD_JWKS, with the patch each one renders its settings with.
IDA_SETTINGS_PATCHES = {
    "credentials": "credentials-settings-common",
    "discovery": "discovery-common-settings",
    "ecommerce": "ecommerce-settings-common",
}
# How keyd-openedx gets into each IDA's image (None: that plugin has no Dockerfile patch for it).
IDA_DOCKERFILE_PATCHES = {
    "credentials": "credentials-dockerfile-post-python-requirements",
    "discovery": None,
    "ecommerce": "ecommerce-dockerfile-pre-assets",
}

_EXPECTED_DEFAULT = (
    "lms,cms{% for ida in " + json.dumps(sorted(IDA_SETTINGS_PATCHES)) + " %}"
    "{% if ida in PLUGINS %},{{ ida }}{% endif %}{% endfor %}"
)

DEFAULTS: dict[str, t.Any] = {
    "VERSION": __version__,
    "DOCKER_IMAGE": "keyd:{{ KEYD_VERSION }}",
    "TOOLS_DOCKER_IMAGE": "keyd-tools:{{ KEYD_VERSION }}",
    "BACKEND": "local",
    "VAULT_ADDR": "",
    "VAULT_ROLE_ID": "",
    "VAULT_SECRET_ID": "",
    "LMS_VAULT_ROLE_ID": "",
    "LMS_VAULT_SECRET_ID": "",
    "ALGORITHM": "RS512",
    "ROTATION_SCHEDULE": "0 0 1 * *",
    "EXPECTED_CLIENTS": _EXPECTED_DEFAULT,
    "SIGNING_ENABLED": False,
    "KEEP_STATIC_KEY": True,
    "PIP_REQUIREMENT": "keyd-openedx==" + KEYD_OPENEDX_VERSION,
}
# Generated once and saved in config.yml by `tutor config save`: the local backend's role tokens.
UNIQUE: dict[str, t.Any] = {
    "SIGNER_TOKEN": "{{ 32|random_string }}",
    "ADMIN_TOKEN": "{{ 32|random_string }}",
    "AUDITOR_TOKEN": "{{ 32|random_string }}",
}

hooks.Filters.CONFIG_DEFAULTS.add_items([("KEYD_" + k, v) for k, v in DEFAULTS.items()])
hooks.Filters.CONFIG_UNIQUE.add_items([("KEYD_" + k, v) for k, v in UNIQUE.items()])


# ---- templates and patches ------------------------------------------------------------------

hooks.Filters.ENV_TEMPLATE_ROOTS.add_item(os.path.join(HERE, "templates"))
# env/plugins/keyd/apps/...: the Vault secret ID file the keyd service reads (Vault mode).
hooks.Filters.ENV_TEMPLATE_TARGETS.add_item(("keyd/apps", "plugins"))


def _read(*path: str) -> str:
    with open(os.path.join(HERE, *path), encoding="utf-8") as f:
        return f.read()


for _path in sorted(glob(os.path.join(HERE, "patches", "*"))):
    hooks.Filters.ENV_PATCHES.add_item((os.path.basename(_path), _read("patches", os.path.basename(_path))))

_IDA_SETTINGS = _read("templates", "keyd", "ida-settings")
_IDA_DOCKERFILE = _read("templates", "keyd", "ida-dockerfile")
for _ida, _patch in IDA_SETTINGS_PATCHES.items():
    _head = "{% set keyd_client = " + json.dumps(_ida) + " %}"
    hooks.Filters.ENV_PATCHES.add_item((_patch, _head + _IDA_SETTINGS))
    if IDA_DOCKERFILE_PATCHES[_ida]:
        hooks.Filters.ENV_PATCHES.add_item((IDA_DOCKERFILE_PATCHES[_ida], _head + _IDA_DOCKERFILE))


# ---- images ---------------------------------------------------------------------------------

hooks.Filters.IMAGES_PULL.add_items([("keyd", "{{ KEYD_DOCKER_IMAGE }}"),
                                     ("keyd-tools", "{{ KEYD_TOOLS_DOCKER_IMAGE }}")])
hooks.Filters.IMAGES_PUSH.add_items([("keyd", "{{ KEYD_DOCKER_IMAGE }}"),
                                     ("keyd-tools", "{{ KEYD_TOOLS_DOCKER_IMAGE }}")])


@hooks.Filters.IMAGES_BUILD_REQUIRED.add()
def _build_openedx_on_launch(names: list[str], context_name: str) -> list[str]:
    """keyd-openedx is installed by a patch of the openedx Dockerfile: `tutor local launch` must
    build that image (`tutor dev launch` builds openedx-dev, which includes it, already)."""
    if context_name == "local" and "openedx" not in names:
        names.append("openedx")
    return names


# ---- jobs -------------------------------------------------------------------------------------

hooks.Filters.CLI_DO_INIT_TASKS.add_item(("keyd", _read("templates", "keyd", "tasks", "keyd", "init")))


@click.command(name="keyd", help="Rotate keyd's signing key, or show keyd's status (ACTION: rotate or status).")
@click.argument("action", type=click.Choice(["rotate", "status"]))
@click.option("--emergency", is_flag=True,
              help="rotate: the new key signs at once and every older key is destroyed (needs --reason)")
@click.option("--reason", default="", help="rotate: why (recorded in keyd's audit trail)")
def keyd_do(action: str, emergency: bool, reason: str) -> t.Iterable[tuple[str, str]]:
    """`tutor local|dev|k8s do keyd rotate [--emergency --reason R]` and `... do keyd status`:
    each runs keyd's CLI in the keyd-job container."""
    reason = reason.strip()
    if action == "status":
        if emergency or reason:
            raise click.UsageError("--emergency and --reason go with `keyd rotate`, not `keyd status`")
        return [("keyd", _read("templates", "keyd", "tasks", "keyd", "status"))]
    if emergency and not reason:
        raise click.UsageError("an emergency rotation needs --reason (it is recorded in keyd's audit trail)")
    args = []
    if emergency:
        args.append("--emergency")
    if reason:
        args += ["--reason", reason]
    # Tutor renders a job's script with Jinja before it runs it: the arguments the user typed go in
    # as a Jinja string literal (JSON's escapes are Jinja's), so they are never read as markup.
    script = "{% set keyd_rotate_args = " + json.dumps(shlex.join(args)) + " %}"
    return [("keyd", script + _read("templates", "keyd", "tasks", "keyd", "rotate"))]


hooks.Filters.CLI_DO_COMMANDS.add_item(keyd_do)


# ---- settings check ---------------------------------------------------------------------------

_CLIENT = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_URL = re.compile(r"^https?://[^/\s]+")


def problems(config: dict[str, t.Any]) -> list[str]:
    """Every bad KEYD_* value of a loaded (rendered) Tutor configuration, one sentence each."""
    out: list[str] = []

    def get(name: str) -> t.Any:
        return config.get("KEYD_" + name)

    for name in ("SIGNING_ENABLED", "KEEP_STATIC_KEY"):
        if not isinstance(get(name), bool):
            out.append("KEYD_{} must be true or false, got {!r}".format(name, get(name)))
    backend = get("BACKEND")
    if backend not in ("local", "vault"):
        out.append("KEYD_BACKEND must be local or vault, got {!r}".format(backend))
    if get("ALGORITHM") not in ("RS512", "RS256"):
        out.append("KEYD_ALGORITHM must be RS512 or RS256 (Open edX services verify RSA keys only), got {!r}"
                   .format(get("ALGORITHM")))
    for name in ("DOCKER_IMAGE", "TOOLS_DOCKER_IMAGE", "ROTATION_SCHEDULE"):
        if not isinstance(get(name), str) or not get(name).strip():
            out.append("KEYD_{} must be a non-empty string".format(name))
    req = get("PIP_REQUIREMENT")
    if not isinstance(req, str) or not req.strip() or "'" in req:
        out.append("KEYD_PIP_REQUIREMENT must be a pip requirement without single quotes, got {!r}".format(req))
    clients = get("EXPECTED_CLIENTS")
    if not isinstance(clients, str):
        out.append("KEYD_EXPECTED_CLIENTS must be a comma-separated string, got {!r}".format(clients))
    else:
        for c in [c.strip() for c in clients.split(",") if c.strip()]:
            if not _CLIENT.match(c):
                out.append("KEYD_EXPECTED_CLIENTS: {!r} is not a client name ([A-Za-z0-9._:-], 1 to 64)".format(c))
    if get("KEEP_STATIC_KEY") is False and get("SIGNING_ENABLED") is False:
        out.append("KEYD_KEEP_STATIC_KEY can be false only once KEYD_SIGNING_ENABLED is true: the LMS still "
                   "signs with Tutor's key, which no service would trust any more")
    if backend == "vault":
        if not isinstance(get("VAULT_ADDR"), str) or not _URL.match(get("VAULT_ADDR")):
            out.append("KEYD_VAULT_ADDR must be your Vault's http(s):// address with KEYD_BACKEND vault, got {!r}"
                       .format(get("VAULT_ADDR")))
        for name in ("VAULT_ROLE_ID", "VAULT_SECRET_ID", "LMS_VAULT_ROLE_ID", "LMS_VAULT_SECRET_ID"):
            if not isinstance(get(name), str) or not get(name).strip():
                out.append("KEYD_{} is required with KEYD_BACKEND vault (an AppRole you created, see "
                           "docs/tutor.md)".format(name))
    elif backend == "local":
        tokens = [get(n) for n in ("SIGNER_TOKEN", "ADMIN_TOKEN", "AUDITOR_TOKEN")]
        if not all(isinstance(x, str) and x.strip() for x in tokens):
            out.append("KEYD_SIGNER_TOKEN, KEYD_ADMIN_TOKEN and KEYD_AUDITOR_TOKEN must be set (run tutor config save)")
        elif len(set(tokens)) != 3:
            out.append("KEYD_SIGNER_TOKEN, KEYD_ADMIN_TOKEN and KEYD_AUDITOR_TOKEN must differ")
    return out


@hooks.Actions.CONFIG_LOADED.add()
def _check_settings(config: dict[str, t.Any]) -> None:
    found = problems(config)
    if found:
        from tutor import exceptions

        raise exceptions.TutorError("tutor-contrib-keyd: " + "; ".join(found) + ".")
