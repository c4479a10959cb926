#!/usr/bin/python3
"""bench/login.py — what one Open edX login's JWT costs the LMS: signed by the LMS itself, as
openedx-platform does it today, or through keyd-openedx -> keyd (local backend, and Vault).

bench/run starts the servers (`BENCH_ONLY=login ./bench/run`, or as part of `make bench`) and runs
this script, which measures from one process, one login at a time (a gunicorn worker thread), the
ways below, interleaved round by round (the order reverses every other round):

  today       openedx-platform's JWT creation: the claims of a password-grant login, then, as its
              `_encode_and_sign` does on every call, the RS512 private JWK parsed from the settings
              string (json.loads, then PyJWT's PyJWK, which builds and checks the RSA key) and
              jwt.encode with it. A stand-in written with the same library calls (Debian's
              python3-jwt and python3-cryptography), not Open edX's code.
  direct      the same claims POSTed to keyd (local) with requests.Session: any client's floor
  keyd-local  keyd-openedx's KeydSigner.sign (what the plugin's `_encode_and_sign` calls) -> keyd,
              local backend
  keyd-vault  the same -> keyd with its Vault backend, the LMS's Vault token as the bearer

For each way: p50/p99 wall time per login and the CPU this (the LMS's) process spends per login
(time.process_time, all threads), plus, for information, the CPU keyd and Vault spend per login
(from /proc/<pid>/stat). It prints the bench table's rows 7 and writes every number to --out.

Environment (set by bench/run; tokens never go on the command line):
  KEYD_BENCH_LOCAL_URL, KEYD_BENCH_LOCAL_TOKEN   a local-backend RS512 keyd and its signer token
  KEYD_BENCH_VAULT_URL, KEYD_BENCH_VAULT_TOKEN   a Vault-backend RS512 keyd and an LMS Vault token
                                                 (optional: without them keyd-vault is skipped)
  KEYD_BENCH_PIDS                                "name=pid ..." whose CPU is counted (keyd-local,
                                                 keyd-vault, vault)

  /usr/bin/python3 bench/login.py --rounds 5 --seconds 5 --out bench/out/latest
"""

import argparse
import json
import os
import statistics
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)

# login_overhead configures Django and puts keyd-openedx on the path; it holds the login's claims.
from login_overhead import claims, pct  # noqa: E402

import jwt  # noqa: E402
import requests  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from jwt import PyJWK  # noqa: E402
from jwt.algorithms import RSAAlgorithm  # noqa: E402

from keyd_openedx.conf import validate_signing  # noqa: E402
from keyd_openedx.lms.signer import KeydSigner  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def lms_settings() -> dict:
    """The LMS's JWT_AUTH as an operator sets it: the private JWK is a JSON string in the settings."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key))
    jwk["kid"] = "lms-bench"
    return {"JWT_PRIVATE_SIGNING_JWK": json.dumps(jwk), "JWT_SIGNING_ALGORITHM": "RS512",
            "JWT_PUBLIC": key.public_key()}


def today_signer(jwt_auth: dict):
    """openedx-platform's asymmetric signing as it behaves per call (stand-in, same library calls)."""

    def encode_and_sign(payload: dict) -> str:
        key = json.loads(jwt_auth["JWT_PRIVATE_SIGNING_JWK"])  # parsed on every call
        algorithm = jwt_auth["JWT_SIGNING_ALGORITHM"]
        jwk = PyJWK(key, algorithm)  # builds (and checks) the RSA private key on every call
        return jwt.encode(payload, jwk.key, algorithm=algorithm)

    return encode_and_sign


def proc_cpu(pid: int) -> float:
    """Seconds of CPU (user + system) process pid has used."""
    with open("/proc/{}/stat".format(pid)) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def run_for(call, seconds: float, minimum: int, pids: dict):
    """Calls call() back to back for seconds (and at least minimum times); returns the wall and CPU
    time of each call and the CPU each of pids used meanwhile."""
    wall, cpu = [], []
    before = {name: proc_cpu(pid) for name, pid in pids.items()}
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(wall) < minimum:
        c0, w0 = time.process_time(), time.perf_counter()
        call()
        w1, c1 = time.perf_counter(), time.process_time()
        wall.append(w1 - w0)
        cpu.append(c1 - c0)
    used = {name: proc_cpu(pid) - before[name] for name, pid in pids.items()}
    return wall, cpu, used


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=5.0, help="seconds per way and round")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds per way before the rounds")
    ap.add_argument("--out", required=True, help="directory for login.json")
    args = ap.parse_args()

    local_url, local_token = os.environ["KEYD_BENCH_LOCAL_URL"], os.environ["KEYD_BENCH_LOCAL_TOKEN"]
    vault_url, vault_token = os.environ.get("KEYD_BENCH_VAULT_URL"), os.environ.get("KEYD_BENCH_VAULT_TOKEN")
    pids = {}
    for item in os.environ.get("KEYD_BENCH_PIDS", "").split():
        name, pid = item.split("=", 1)
        pids[name] = int(pid)

    jwt_auth = lms_settings()
    today = today_signer(jwt_auth)
    session = requests.Session()
    headers = {"Authorization": "Bearer " + local_token, "Content-Type": "application/json"}

    def direct() -> str:
        r = session.post(local_url + "/v1/sign", data=json.dumps({"claims": claims()}, separators=(",", ":")),
                         headers=headers, timeout=2)
        r.raise_for_status()
        return r.json()["token"]

    local = KeydSigner(validate_signing({"URL": local_url, "TOKEN": local_token, "TIMEOUT": 2}))
    ways = {"today": lambda: today(claims()), "direct": direct, "keyd-local": lambda: local.sign(claims())}
    if vault_url and vault_token:
        remote = KeydSigner(validate_signing({"URL": vault_url, "TOKEN": vault_token, "TIMEOUT": 2}))
        ways["keyd-vault"] = lambda: remote.sign(claims())

    # Every way signs a JWT its verifier accepts: today's with the LMS's public key, keyd's RS512.
    tok = ways["today"]()
    jwt.decode(tok, jwt_auth["JWT_PUBLIC"], algorithms=["RS512"], audience="openedx")
    for name in ways:
        header = jwt.get_unverified_header(ways[name]())
        if header.get("alg") != "RS512":
            raise SystemExit("{} signed with {}, want RS512".format(name, header.get("alg")))

    for call in ways.values():
        run_for(call, args.warmup, 3, {})
    raw = {name: {"wall": [], "cpu": [], "rounds": [], "procs": {p: 0.0 for p in pids}} for name in ways}
    names = list(ways)
    for r in range(args.rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            wall, cpu, used = run_for(ways[name], args.seconds, 10, pids)
            w = raw[name]
            w["wall"].extend(wall)
            w["cpu"].extend(cpu)
            w["rounds"].append({"n": len(wall), "p50_ms": pct(wall, 50) * 1e3, "cpu_ms": statistics.fmean(cpu) * 1e3})
            for p, s in used.items():
                w["procs"][p] += s

    summary = {}
    for name, w in raw.items():
        n = len(w["wall"])
        summary[name] = {
            "logins": n, "p50_ms": pct(w["wall"], 50) * 1e3, "p99_ms": pct(w["wall"], 99) * 1e3,
            "lms_cpu_ms": statistics.fmean(w["cpu"]) * 1e3,
            "logins_per_s": n / sum(w["wall"]),
            "other_cpu_ms": {p: s / n * 1e3 for p, s in w["procs"].items()},
            "rounds": w["rounds"],
        }
    with open(os.path.join(args.out, "login.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    print_rows(summary)
    return 0


def cpu_note(s: dict, procs) -> str:
    parts = ["{:.2f} ms LMS CPU".format(s["lms_cpu_ms"])]
    for p in procs:
        if p in s["other_cpu_ms"]:
            parts.append("{:.2f} ms {} CPU".format(s["other_cpu_ms"][p], "Vault" if p == "vault" else "keyd"))
    return ", ".join(parts)


def print_rows(summary: dict) -> None:
    """Rows in bench/run's table: | row | keyd | reference | ratio | goal | met? | keyd p50/p99 | ref p50/p99 |"""
    t = summary["today"]
    for way, backend, procs in (("keyd-local", "local", ("keyd-local",)),
                                ("keyd-vault", "Vault", ("keyd-vault", "vault"))):
        if way not in summary:
            print("| 7 login RS512, keyd-openedx → keyd ({}) vs the LMS signing itself today | n/a (no Vault) "
                  "| — | — | info | — | — | — |".format(backend))
            continue
        k = summary[way]
        print("| 7 login RS512, keyd-openedx → keyd ({}) vs the LMS signing itself today (JWK parsed per call) "
              "| {:.0f} /s, {} | {:.0f} /s, {} | {:.1f}× faster, {:.1f}× less LMS CPU | info | — "
              "| {:.2f} / {:.2f} ms | {:.2f} / {:.2f} ms |".format(
                  backend, k["logins_per_s"], cpu_note(k, procs), t["logins_per_s"], cpu_note(t, ()),
                  t["p50_ms"] / k["p50_ms"], t["lms_cpu_ms"] / k["lms_cpu_ms"],
                  k["p50_ms"], k["p99_ms"], t["p50_ms"], t["p99_ms"]))
    k, d = summary["keyd-local"], summary["direct"]
    dcpu, dp50 = k["lms_cpu_ms"] - d["lms_cpu_ms"], k["p50_ms"] - d["p50_ms"]
    met = "yes" if dcpu <= 0.2 and dp50 <= 0.5 else "**NO**"
    print("| 7p login: keyd-openedx's overhead over a direct requests POST (keyd local) "
          "| {:.2f} ms LMS CPU | {:.2f} ms LMS CPU | {:+.2f} ms CPU, {:+.2f} ms p50 | ≤ +0.2 ms CPU, ≤ +0.5 ms p50 "
          "| {} | {:.2f} / {:.2f} ms | {:.2f} / {:.2f} ms |".format(
              k["lms_cpu_ms"], d["lms_cpu_ms"], dcpu, dp50, met, k["p50_ms"], k["p99_ms"], d["p50_ms"], d["p99_ms"]))


if __name__ == "__main__":
    sys.exit(main())
