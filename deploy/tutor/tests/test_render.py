"""The plugin as Tutor loads it: entry point, settings, patches and templates rendered with Jinja2 +
StrictUndefined for the defaults and for each documented setting changed, the settings check, the
init task and the `do keyd` command (its scripts run under `sh -e -c` with a recording keyd)."""

import os
import stat
import subprocess

import click
import pytest
from harness import SETTING_CHANGES, Renderer

# Every patch name the plugin fills, and the Tutor (or Tutor plugin) template that calls it.
PATCHES = {
    "local-docker-compose-services", "local-docker-compose-jobs-services",
    "local-docker-compose-lms-dependencies", "local-docker-compose-cms-dependencies",
    "local-docker-compose-permissions-volumes", "local-docker-compose-permissions-command",
    "k8s-deployments", "k8s-services", "k8s-jobs", "k8s-volumes",
    "openedx-dockerfile-post-python-requirements", "openedx-common-settings", "openedx-lms-common-settings",
    "credentials-settings-common", "discovery-common-settings", "ecommerce-settings-common",
    "credentials-dockerfile-post-python-requirements", "ecommerce-dockerfile-pre-assets",
}
CONTRACT_SETTINGS = {
    "KEYD_DOCKER_IMAGE", "KEYD_TOOLS_DOCKER_IMAGE", "KEYD_BACKEND", "KEYD_VAULT_ADDR", "KEYD_VAULT_ROLE_ID",
    "KEYD_VAULT_SECRET_ID", "KEYD_LMS_VAULT_ROLE_ID", "KEYD_LMS_VAULT_SECRET_ID", "KEYD_ALGORITHM",
    "KEYD_ROTATION_SCHEDULE", "KEYD_EXPECTED_CLIENTS", "KEYD_SIGNING_ENABLED", "KEYD_KEEP_STATIC_KEY",
    "KEYD_PIP_REQUIREMENT",
}
CASES = dict({"defaults": {}}, **SETTING_CHANGES)


def test_loaded_through_its_entry_point(plugin):
    from tutorkeyd.__about__ import __version__

    assert plugin.entry_point.value == "tutorkeyd.plugin"
    assert plugin.entry_point.dist.version == __version__
    assert plugin.module.__name__ == "tutorkeyd.plugin"


def test_default_images_are_the_ones_make_image_tags():
    """make image tags keyd:<VERSION> and keyd-tools:<VERSION> (the repository's VERSION file): the
    plugin's default images name that same version, so an operator who loads the built images runs them."""
    from tutorkeyd.__about__ import __version__

    with open(os.path.join(os.path.dirname(__file__), "..", "..", "..", "VERSION")) as f:
        assert f.read().strip() == __version__


def test_settings_are_the_contract_and_the_tokens_are_unique(plugin):
    defaults = dict(plugin.hooks.Filters.CONFIG_DEFAULTS.iterate())
    assert set(defaults) == CONTRACT_SETTINGS | {"KEYD_VERSION"}
    unique = dict(plugin.hooks.Filters.CONFIG_UNIQUE.iterate())
    assert set(unique) == {"KEYD_SIGNER_TOKEN", "KEYD_ADMIN_TOKEN", "KEYD_AUDITOR_TOKEN"}
    a, b = plugin.config(), plugin.config()
    assert (a["KEYD_BACKEND"], a["KEYD_ALGORITHM"], a["KEYD_SIGNING_ENABLED"], a["KEYD_KEEP_STATIC_KEY"]) == \
        ("local", "RS512", False, True)
    for name in unique:
        assert len(a[name]) == 32 and a[name].isalnum() and a[name] != b[name]
    assert a["KEYD_DOCKER_IMAGE"] == "keyd:" + a["KEYD_VERSION"]
    assert a["KEYD_TOOLS_DOCKER_IMAGE"] == "keyd-tools:" + a["KEYD_VERSION"]


def test_keyd_openedx_version_is_the_package_in_this_repository(plugin):
    import tomllib

    from harness import REPO
    from tutorkeyd.__about__ import KEYD_OPENEDX_VERSION

    with open(os.path.join(REPO, "openedx", "pyproject.toml"), "rb") as f:
        assert tomllib.load(f)["project"]["version"] == KEYD_OPENEDX_VERSION
    assert plugin.config()["KEYD_PIP_REQUIREMENT"] == "keyd-openedx==" + KEYD_OPENEDX_VERSION


@pytest.mark.parametrize("plugins,want", [
    (["mfe", "keyd"], "lms,cms"),
    (["mfe", "keyd", "credentials"], "lms,cms,credentials"),
    (["keyd", "ecommerce", "discovery", "notes", "credentials"], "lms,cms,credentials,discovery,ecommerce"),
])
def test_expected_clients_default_follows_the_enabled_ida_plugins(plugin, plugins, want):
    assert plugin.config({"PLUGINS": plugins})["KEYD_EXPECTED_CLIENTS"] == want


def test_patch_names(plugin):
    assert set(plugin.patches()) == PATCHES


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_patch_and_template_renders(plugin, case, tmp_path):
    cfg = plugin.config(CASES[case])
    r = Renderer(plugin, cfg)
    for name, items in plugin.patches().items():
        for item in items:
            out = r.render_str(item)
            assert "{{" not in out and "{%" not in out, name
    written = r.save(str(tmp_path))
    assert [os.path.relpath(p, str(tmp_path)) for p in written] == ["env/plugins/keyd/apps/vault/secret-id"]
    with open(written[0], encoding="utf-8") as f:
        assert f.read() == cfg["KEYD_VAULT_SECRET_ID"]
    for task in tasks(plugin):
        r.render_str(task)


def tasks(plugin):
    from tutorkeyd.plugin import keyd_do

    out = [task for _, task in plugin.hooks.Filters.CLI_DO_INIT_TASKS.iterate()]
    for args in (["status"], ["rotate"], ["rotate", "--emergency", "--reason", "LMS host compromised"]):
        out += [task for _, task in keyd_do.main(args, standalone_mode=False)]
    return out


def test_init_task_is_selected_by_limit_keyd(plugin):
    assert [s for s, _ in plugin.hooks.Filters.CLI_DO_INIT_TASKS.iterate_from_context("app:keyd")] == ["keyd"]
    assert list(plugin.hooks.Filters.CLI_DO_INIT_TASKS.iterate_from_context("app:lms")) == []


def test_do_command_is_registered_and_checks_its_options(plugin):
    from tutorkeyd.plugin import keyd_do

    assert keyd_do in list(plugin.hooks.Filters.CLI_DO_COMMANDS.iterate())
    assert keyd_do.name == "keyd"
    for args, msg in ((["rotate", "--emergency"], "needs --reason"),
                      (["status", "--reason", "x"], "go with `keyd rotate`"),
                      (["status", "--emergency"], "go with `keyd rotate`")):
        with pytest.raises(click.UsageError, match=msg):
            keyd_do.main(args, standalone_mode=False)
    with pytest.raises(click.BadParameter):
        keyd_do.main(["restart"], standalone_mode=False)


def test_images(plugin):
    pulls = dict(plugin.hooks.Filters.IMAGES_PULL.iterate({}))
    assert pulls == {"keyd": "{{ KEYD_DOCKER_IMAGE }}", "keyd-tools": "{{ KEYD_TOOLS_DOCKER_IMAGE }}"}
    assert plugin.hooks.Filters.IMAGES_BUILD_REQUIRED.apply([], "local") == ["openedx"]
    assert plugin.hooks.Filters.IMAGES_BUILD_REQUIRED.apply(["openedx-dev"], "dev") == ["openedx-dev"]


# ---- the settings check (CONFIG_LOADED) -----------------------------------------------------------

@pytest.mark.parametrize("values,message", [
    ({"KEYD_BACKEND": "consul"}, "KEYD_BACKEND must be local or vault, got 'consul'"),
    ({"KEYD_ALGORITHM": "ES256"}, "KEYD_ALGORITHM must be RS512 or RS256 (Open edX services verify RSA keys only)"),
    ({"KEYD_SIGNING_ENABLED": "yes"}, "KEYD_SIGNING_ENABLED must be true or false, got 'yes'"),
    ({"KEYD_KEEP_STATIC_KEY": False}, "KEYD_KEEP_STATIC_KEY can be false only once KEYD_SIGNING_ENABLED is true"),
    ({"KEYD_EXPECTED_CLIENTS": "lms,c m s"}, "KEYD_EXPECTED_CLIENTS: 'c m s' is not a client name"),
    ({"KEYD_EXPECTED_CLIENTS": ["lms"]}, "KEYD_EXPECTED_CLIENTS must be a comma-separated string"),
    ({"KEYD_PIP_REQUIREMENT": "keyd-openedx'; rm -rf /"}, "KEYD_PIP_REQUIREMENT must be a pip requirement without single quotes"),
    ({"KEYD_ROTATION_SCHEDULE": " "}, "KEYD_ROTATION_SCHEDULE must be a non-empty string"),
    ({"KEYD_BACKEND": "vault"}, "KEYD_VAULT_ADDR must be your Vault's http(s):// address"),
    ({"KEYD_BACKEND": "vault", "KEYD_VAULT_ADDR": "https://v:8200"}, "KEYD_LMS_VAULT_SECRET_ID is required with KEYD_BACKEND vault"),
    ({"KEYD_ADMIN_TOKEN": "same", "KEYD_AUDITOR_TOKEN": "same"}, "must differ"),
])
def test_bad_settings_stop_config_loading_with_one_clear_message(plugin, values, message):
    from tutor.exceptions import TutorError

    with pytest.raises(TutorError) as e:
        plugin.config(values)
    assert message in str(e.value)
    assert str(e.value).startswith("tutor-contrib-keyd: ")


def test_every_problem_is_named_at_once(plugin):
    from tutorkeyd.plugin import problems

    found = problems(plugin.config({"KEYD_BACKEND": "vault", "KEYD_ALGORITHM": "EdDSA"}, check=False))
    assert len(found) == 6, found  # algorithm, address, four AppRole values


def test_every_documented_change_passes_the_check(plugin):
    for values in SETTING_CHANGES.values():
        plugin.config(values)


# ---- the job scripts, run as Tutor runs them: rendered, then `sh -e -c SCRIPT` --------------------

FAKE_KEYD = """#!/bin/sh
# records how it was called; "healthcheck" fails when KEYD_FAKE_DOWN is set
printf '%s\\n' "token=${KEYD_TOKEN:-} vault_token=${VAULT_TOKEN:-}" >> "$KEYD_FAKE_LOG"
for a in "$@"; do printf '[%s]' "$a" >> "$KEYD_FAKE_LOG"; done
echo >> "$KEYD_FAKE_LOG"
if [ "$1" = healthcheck ] && [ -n "${KEYD_FAKE_DOWN:-}" ]; then echo "keyd: not ready" >&2; exit 1; fi
exit 0
"""


def run_job(plugin, tmp_path, script, values=None, env=None):
    cfg = plugin.config(values or {})
    rendered = Renderer(plugin, cfg).render_str(script).strip()
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    (bindir / "keyd").write_text(FAKE_KEYD)
    (bindir / "keyd").chmod(stat.S_IRWXU)
    (bindir / "sleep").write_text("#!/bin/sh\nexit 0\n")  # the init loop's 1 s waits, without waiting
    (bindir / "sleep").chmod(stat.S_IRWXU)
    log = tmp_path / "calls.log"
    job_env = {"PATH": "{}:/usr/bin:/bin".format(bindir), "KEYD_FAKE_LOG": str(log), "KEYD_SERVER": "http://keyd:8080",
               "KEYD_ADMIN_TOKEN": cfg["KEYD_ADMIN_TOKEN"], "KEYD_AUDITOR_TOKEN": cfg["KEYD_AUDITOR_TOKEN"],
               "VAULT_ADDR": cfg["KEYD_VAULT_ADDR"], **(env or {})}
    p = subprocess.run(["sh", "-e", "-c", rendered], env=job_env, capture_output=True, text=True, timeout=30)
    return p, (log.read_text() if log.exists() else ""), cfg


def do_script(*args):
    from tutorkeyd.plugin import keyd_do

    [(service, script)] = keyd_do.main(list(args), standalone_mode=False)
    assert service == "keyd"
    return script


def test_rotate_passes_the_reason_verbatim_and_the_admin_token_by_environment(plugin, tmp_path):
    reason = "it's {{ KEYD_ADMIN_TOKEN }} $(touch /tmp/tutor-keyd-pwned) `id` \"quoted\" {% raw %}"
    p, calls, cfg = run_job(plugin, tmp_path, do_script("rotate", "--emergency", "--reason", reason))
    assert p.returncode == 0, p.stderr
    assert "[rotate][--server][http://keyd:8080][--emergency][--reason][{}]".format(reason) in calls
    assert "token=" + cfg["KEYD_ADMIN_TOKEN"] in calls
    assert not os.path.exists("/tmp/tutor-keyd-pwned")
    rendered = Renderer(plugin, cfg).render_str(do_script("rotate"))
    assert cfg["KEYD_ADMIN_TOKEN"] not in rendered  # Tutor prints the script it runs


def test_rotate_in_vault_mode_needs_the_operators_token(plugin, tmp_path):
    from harness import VAULT

    p, calls, _ = run_job(plugin, tmp_path, do_script("rotate"), VAULT)
    assert p.returncode == 1 and "KEYD_OPERATOR_TOKEN" in p.stderr and "rotate" not in calls
    p, calls, _ = run_job(plugin, tmp_path, do_script("rotate"), VAULT, {"KEYD_OPERATOR_TOKEN": "hvs.operator"})
    assert p.returncode == 0 and "token=hvs.operator" in calls and "[rotate]" in calls


def test_status_shows_readiness_switches_keys_and_propagation(plugin, tmp_path):
    p, calls, cfg = run_job(plugin, tmp_path, do_script("status"),
                            {"KEYD_SIGNING_ENABLED": True, "KEYD_KEEP_STATIC_KEY": False})
    assert p.returncode == 0, p.stderr
    assert "LMS signs through keyd: yes" in p.stdout and "Tutor's static key trusted: no" in p.stdout
    assert "ready: yes" in p.stdout and "expected clients: lms,cms" in p.stdout
    assert "[keys][--server][http://keyd:8080]" in calls and "[propagation]" in calls
    assert "token=" + cfg["KEYD_AUDITOR_TOKEN"] in calls
    p, calls, _ = run_job(plugin, tmp_path, do_script("status"), {}, {"KEYD_FAKE_DOWN": "1"})
    assert p.returncode == 1 and "ready: NO" in p.stdout


def test_init_waits_for_keyd_then_checks_the_jwks(plugin, tmp_path):
    [init] = [t for _, t in plugin.hooks.Filters.CLI_DO_INIT_TASKS.iterate()]
    p, calls, _ = run_job(plugin, tmp_path, init)
    assert p.returncode == 0, p.stderr
    assert "[jwks][--server][http://keyd:8080][--format][edx]" in calls and "[bootstrap]" not in calls
    down = tmp_path / "down"
    down.mkdir()
    p, calls, _ = run_job(plugin, down, init, env={"KEYD_FAKE_DOWN": "1"})
    assert p.returncode == 1 and "not ready after 90 s" in p.stderr and "[jwks]" not in calls


def test_init_in_vault_mode_bootstraps_only_with_the_operators_token(plugin, tmp_path):
    from harness import VAULT

    p, calls, _ = run_job(plugin, tmp_path, [t for _, t in plugin.hooks.Filters.CLI_DO_INIT_TASKS.iterate()][0],
                          dict(VAULT, KEYD_ALGORITHM="RS256"), {"KEYD_OPERATOR_TOKEN": "hvs.root"})
    assert p.returncode == 0, p.stderr
    assert "vault_token=hvs.root\n[bootstrap][--algorithm][RS256]" in calls
    (tmp_path / "calls.log").unlink()
    p, calls, _ = run_job(plugin, tmp_path, [t for _, t in plugin.hooks.Filters.CLI_DO_INIT_TASKS.iterate()][0], VAULT)
    assert p.returncode == 0 and "bootstrap is skipped" in p.stdout and "[bootstrap]" not in calls
