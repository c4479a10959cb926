"""The rendered compose services, inserted into Tutor-shaped skeletons, pass `docker-compose config -q`
combined as Tutor combines the files: `tutor local` (docker-compose.yml + docker-compose.prod.yml,
and + docker-compose.jobs.yml for jobs) and `tutor dev` (local + dev files, and both jobs files)."""

import os
import shutil
import subprocess

import pytest
import yaml
from harness import HERE, SETTING_CHANGES, Renderer

SKELETON = os.path.join(HERE, "skeleton")
CASES = dict({"defaults": {}}, **SETTING_CHANGES)
LOCAL = ["local/docker-compose.yml", "local/docker-compose.prod.yml"]
LOCAL_JOBS = LOCAL + ["local/docker-compose.jobs.yml"]
DEV = ["local/docker-compose.yml", "dev/docker-compose.yml"]
DEV_JOBS = DEV + ["local/docker-compose.jobs.yml", "dev/docker-compose.jobs.yml"]


def render_env(plugin, values, root):
    """env/ as `tutor config save` writes it: the skeletons with the plugin's patches, the plugin's files."""
    r = Renderer(plugin, plugin.config(values), [SKELETON])
    for name in ("local/docker-compose.yml", "local/docker-compose.prod.yml", "local/docker-compose.jobs.yml",
                 "dev/docker-compose.yml", "dev/docker-compose.jobs.yml", "apps/permissions/setowners.sh"):
        path = os.path.join(root, "env", name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(r.render_template(name))
    r.save(root)
    return os.path.join(root, "env")


def compose(env_dir, files, *args, extra_env=None):
    if shutil.which("docker-compose") is None:
        pytest.fail("docker-compose is missing (Debian package docker-compose; make setup installs it)")
    cmd = ["docker-compose", "--project-name", "tutor_keyd_test"]
    for f in files:
        cmd += ["-f", os.path.join(env_dir, f)]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(extra_env or {})}
    return subprocess.run(cmd + ["config"] + list(args), capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("files", [LOCAL, LOCAL_JOBS, DEV, DEV_JOBS], ids=["local", "local-jobs", "dev", "dev-jobs"])
def test_compose_config_is_valid(plugin, tmp_path, case, files):
    env_dir = render_env(plugin, CASES[case], str(tmp_path))
    p = compose(env_dir, files, "-q")
    assert p.returncode == 0, p.stderr
    assert "WARNING" not in p.stderr, p.stderr


def merged(plugin, tmp_path, values, files, extra_env=None):
    env_dir = render_env(plugin, values, str(tmp_path))
    p = compose(env_dir, files, extra_env=extra_env)
    assert p.returncode == 0, p.stderr
    return yaml.safe_load(p.stdout)["services"], env_dir


def volume(v):
    """A service volume as `docker-compose config` prints it: a dict (v2) or "source:target[:mode]" (v1)."""
    if isinstance(v, dict):
        return v["source"], v["target"], bool(v.get("read_only"))
    parts = v.split(":")
    return parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")


def test_local_backend_service(plugin, tmp_path):
    services, _ = merged(plugin, tmp_path, {}, LOCAL_JOBS)
    keyd = services["keyd"]
    cfg_tokens = {k: v for k, v in keyd["environment"].items() if k.endswith("_TOKEN")}
    assert sorted(cfg_tokens) == ["KEYD_ADMIN_TOKEN", "KEYD_AUDITOR_TOKEN", "KEYD_SIGNER_TOKEN"]
    assert keyd["environment"]["KEYD_BACKEND"] == "local"
    assert keyd["environment"]["KEYD_ISSUER"] == "http://local.openedx.io/oauth2"
    assert keyd["environment"]["KEYD_EXPECTED_CLIENTS"] == "lms,cms"
    assert keyd["user"] == "65532:65532" and keyd["read_only"] is True
    assert [volume(v)[1] for v in keyd["volumes"]] == ["/data"]
    assert keyd["healthcheck"]["test"][1:3] == ["/usr/local/bin/keyd", "healthcheck"]
    assert "keyd" in services["lms"]["depends_on"] and "keyd" in services["cms"]["depends_on"]
    assert any(volume(v)[1] == "/mounts/keyd" for v in services["permissions"]["volumes"])
    job = services["keyd-job"]
    assert job["image"].startswith("keyd-tools:") and job["entrypoint"] == []
    assert set(job["environment"]) == {"KEYD_SERVER", "KEYD_ADMIN_TOKEN", "KEYD_AUDITOR_TOKEN"}
    assert job["environment"]["KEYD_ADMIN_TOKEN"] == keyd["environment"]["KEYD_ADMIN_TOKEN"]


def test_vault_mode_service_reads_the_secret_id_file_and_the_job_the_operators_token(plugin, tmp_path):
    from harness import VAULT

    services, env_dir = merged(plugin, tmp_path, VAULT, LOCAL_JOBS, {"KEYD_OPERATOR_TOKEN": "hvs.op"})
    env = services["keyd"]["environment"]
    assert {k: env[k] for k in ("KEYD_BACKEND", "VAULT_ADDR", "KEYD_VAULT_AUTH", "KEYD_VAULT_ROLE_ID",
                                "KEYD_VAULT_SECRET_ID_FILE")} == {
        "KEYD_BACKEND": "vault", "VAULT_ADDR": VAULT["KEYD_VAULT_ADDR"], "KEYD_VAULT_AUTH": "approle",
        "KEYD_VAULT_ROLE_ID": VAULT["KEYD_VAULT_ROLE_ID"], "KEYD_VAULT_SECRET_ID_FILE": "/run/secrets/keyd/secret-id"}
    assert not any(k.endswith("_TOKEN") for k in env)
    [(source, target, read_only)] = [volume(v) for v in services["keyd"]["volumes"]]
    assert target == "/run/secrets/keyd/secret-id" and read_only
    with open(source, encoding="utf-8") as f:
        assert f.read() == VAULT["KEYD_VAULT_SECRET_ID"]
    assert services["keyd-job"]["environment"]["KEYD_OPERATOR_TOKEN"] == "hvs.op"
    services, _ = merged(plugin, tmp_path / "unset", VAULT, LOCAL_JOBS)
    assert services["keyd-job"]["environment"]["KEYD_OPERATOR_TOKEN"] == ""


def test_permissions_script_owns_the_data_dir_for_keyd(plugin, tmp_path):
    env_dir = render_env(plugin, {}, str(tmp_path))
    with open(os.path.join(env_dir, "apps", "permissions", "setowners.sh"), encoding="utf-8") as f:
        assert "setowner 65532 /mounts/keyd" in f.read()
