"""The rendered k8s objects, inserted into a Tutor-shaped kustomization (env/kustomization.yml and
env/k8s/*.yml), pass the Kubernetes schema check of the image issue: `bin/k8scheck -kustomize DIR`
(built by `make bin/k8scheck`; it runs kustomize and decodes every object strictly). The objects the
plugin adds are also checked for what the contract asks of them."""

import os
import shutil
import subprocess

import pytest
import yaml
from harness import HERE, REPO, SETTING_CHANGES, VAULT, Renderer

SKELETON = os.path.join(HERE, "skeleton")
CASES = dict({"defaults": {}}, **SETTING_CHANGES)
FILES = ["kustomization.yml", "k8s/namespace.yml", "k8s/deployments.yml", "k8s/jobs.yml", "k8s/services.yml",
         "k8s/volumes.yml"]
K8SCHECK = os.path.join(REPO, "bin", "k8scheck")


def render_env(plugin, values, root):
    r = Renderer(plugin, plugin.config(values), [SKELETON])
    env_dir = os.path.join(root, "env")
    for name in FILES:
        path = os.path.join(env_dir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(r.render_template(name))
    return env_dir


def objects(env_dir):
    out = []
    for name in FILES[1:]:
        with open(os.path.join(env_dir, name), encoding="utf-8") as f:
            out += [o for o in yaml.safe_load_all(f) if o]
    return {(o["kind"], o["metadata"]["name"]): o for o in out}


def k8scheck():
    if not os.path.exists(K8SCHECK):
        subprocess.run(["make", "bin/k8scheck"], cwd=REPO, check=False)
    if not os.path.exists(K8SCHECK):
        pytest.fail("bin/k8scheck is missing and `make bin/k8scheck` did not build it")
    return K8SCHECK


@pytest.mark.parametrize("case", sorted(CASES))
def test_kustomize_output_passes_the_schema_check(plugin, tmp_path, case):
    env_dir = render_env(plugin, CASES[case], str(tmp_path))
    p = subprocess.run([k8scheck(), "-kustomize", env_dir], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr


def test_kubectl_kustomize_keeps_the_jobs_empty_command(plugin, tmp_path):
    """Tutor's k8s job runner replaces the entrypoint with `sh -e -c` only when the job's container
    has `command: []` in the kustomize output."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    env_dir = render_env(plugin, {}, str(tmp_path))
    p = subprocess.run(["kubectl", "kustomize", env_dir], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    jobs = [o for o in yaml.safe_load_all(p.stdout) if o and o["kind"] == "Job" and o["metadata"]["name"] == "keyd-job"]
    assert jobs and jobs[0]["spec"]["template"]["spec"]["containers"][0]["command"] == []


def test_local_backend_objects(plugin, tmp_path):
    objs = objects(render_env(plugin, {}, str(tmp_path)))
    dep = objs[("Deployment", "keyd")]
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"] == {"type": "Recreate"}
    pod = dep["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["fsGroup"] == 65532
    [c] = pod["containers"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" and c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["resources"]["requests"] and c["resources"]["limits"]
    assert {v["name"]: v for v in pod["volumes"]}["data"]["persistentVolumeClaim"]["claimName"] == "keyd"
    assert ("PersistentVolumeClaim", "keyd") in objs and ("PodDisruptionBudget", "keyd") not in objs
    secret = objs[("Secret", "keyd")]["stringData"]
    assert sorted(secret) == ["admin-token", "auditor-token", "signer-token"]
    tokens = [e for e in c["env"] if e["name"].endswith("_TOKEN")]
    assert all("valueFrom" in e for e in tokens) and len(tokens) == 3  # never inline
    job = objs[("Job", "keyd-job")]["spec"]["template"]["spec"]
    assert job["containers"][0]["command"] == [] and job["containers"][0]["image"].startswith("keyd-tools:")
    assert objs[("Service", "keyd")]["spec"]["ports"][0]["port"] == 8080


def test_vault_mode_objects(plugin, tmp_path):
    objs = objects(render_env(plugin, VAULT, str(tmp_path)))
    dep = objs[("Deployment", "keyd")]
    assert dep["spec"]["replicas"] == 2 and dep["spec"]["strategy"]["type"] == "RollingUpdate"
    assert objs[("PodDisruptionBudget", "keyd")]["spec"]["minAvailable"] == 1
    assert ("PersistentVolumeClaim", "keyd") not in objs
    assert objs[("Secret", "keyd")]["stringData"] == {"secret-id": VAULT["KEYD_VAULT_SECRET_ID"]}
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["KEYD_VAULT_AUTH"] == "approle" and env["KEYD_VAULT_SECRET_ID_FILE"] == "/run/secrets/keyd/secret-id"
    assert env["VAULT_ADDR"] == VAULT["KEYD_VAULT_ADDR"] and not any(n.endswith("_TOKEN") for n in env)
