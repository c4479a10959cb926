#!/usr/bin/python3
"""bench/login_overhead.py — what keyd-openedx costs the LMS per login over a direct POST.

Starts a local-backend keyd (bin/keyd) on a free loopback port and signs the claims of a login
N times, sequentially, from this one process, two ways, interleaved round by round:

  direct   one requests.Session POSTing {"claims": ...} to /v1/sign (what any client would do)
  plugin   keyd-openedx's KeydSigner.sign, as the LMS's _encode_and_sign calls it

and prints p50/p99 wall time and the CPU this process spends per call (time.process_time: every
thread of the process, so a helper thread per call is counted). keyd runs in its own process; its
CPU is not counted. The goal of issue 21: plugin - direct <= 0.2 ms CPU and <= 0.5 ms p50.

  /usr/bin/python3 bench/login_overhead.py [--n 2000] [--rounds 5] [--json FILE]
"""

import argparse
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "openedx"))

import django  # noqa: E402
import requests  # noqa: E402
from django.conf import settings  # noqa: E402

if not settings.configured:
    settings.configure(SECRET_KEY="bench", INSTALLED_APPS=[], DATABASES={}, USE_TZ=True)
    django.setup()

from keyd_openedx.conf import validate_signing  # noqa: E402
from keyd_openedx.lms.signer import KeydSigner  # noqa: E402

ISSUER = "http://localhost:18000/oauth2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def claims() -> dict:
    """The claims _create_jwt builds for a password-grant login (a fresh iat/exp every call)."""
    now = int(time.time())
    return {"iss": ISSUER, "aud": "openedx", "sub": "8d1d2cbd0a9c4d4b9d5ad1b52e4b2c11", "grant_type": "password",
            "iat": now, "exp": now + 3600, "preferred_username": "staff", "scopes": ["email", "profile", "user_id"],
            "version": "1.2.0", "filters": ["user:me"], "is_restricted": False, "email_verified": True,
            "email": "staff@example.com", "name": "Ada Lovelace", "given_name": "Ada", "family_name": "Lovelace",
            "administrator": True, "superuser": False, "user_id": 7, "roles": []}


def measure(call, n: int):
    wall, cpu = [], []
    for _ in range(n):
        c0, w0 = time.process_time(), time.perf_counter()
        call()
        w1, c1 = time.perf_counter(), time.process_time()
        wall.append(w1 - w0)
        cpu.append(c1 - c0)
    return wall, cpu


def pct(values, p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="signs per way and round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--keyd", default=os.path.join(ROOT, "bin", "keyd"))
    ap.add_argument("--json", help="also write the raw summary here")
    args = ap.parse_args()

    token = "signer-" + secrets.token_hex(16)
    data = tempfile.mkdtemp(prefix="keyd-bench-login-")
    port = free_port()
    url = "http://127.0.0.1:{}".format(port)
    log = open(os.path.join(data, "keyd.log"), "wb")
    keyd = subprocess.Popen([args.keyd, "serve", "--listen", "127.0.0.1:{}".format(port), "--data-dir",
                             os.path.join(data, "data"), "--algorithm", "RS512"],
                            env={**os.environ, "KEYD_SIGNER_TOKEN": token, "KEYD_ADMIN_TOKEN": "a" + token,
                                 "KEYD_AUDITOR_TOKEN": "b" + token},
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if keyd.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("keyd did not start; log in " + log.name)
            time.sleep(0.05)

        session = requests.Session()
        headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}

        def direct():
            r = session.post(url + "/v1/sign", data=json.dumps({"claims": claims()}, separators=(",", ":")),
                             headers=headers, timeout=2)
            r.raise_for_status()
            return r.json()["token"]

        signer = KeydSigner(validate_signing({"URL": url, "TOKEN": token, "TIMEOUT": 2}))

        def plugin():
            return signer.sign(claims())

        for f in (direct, plugin):
            measure(f, args.warmup)
        results = {"direct": ([], []), "plugin": ([], [])}
        for r in range(args.rounds):
            order = ("direct", "plugin") if r % 2 == 0 else ("plugin", "direct")
            for name in order:
                wall, cpu = measure(direct if name == "direct" else plugin, args.n)
                results[name][0].extend(wall)
                results[name][1].extend(cpu)
    finally:
        keyd.send_signal(signal.SIGINT)
        try:
            keyd.wait(10)
        except subprocess.TimeoutExpired:
            keyd.kill()
            keyd.wait()
        log.close()
        subprocess.run(["rm", "-rf", data], check=False)

    summary = {}
    for name, (wall, cpu) in results.items():
        summary[name] = {"n": len(wall), "p50_ms": pct(wall, 50) * 1e3, "p99_ms": pct(wall, 99) * 1e3,
                         "cpu_ms": statistics.fmean(cpu) * 1e3}
    d, p = summary["direct"], summary["plugin"]
    summary["overhead"] = {"p50_ms": p["p50_ms"] - d["p50_ms"], "p99_ms": p["p99_ms"] - d["p99_ms"],
                           "cpu_ms": p["cpu_ms"] - d["cpu_ms"]}
    print("| way | signs | p50 ms | p99 ms | LMS CPU ms/sign |")
    print("|---|---|---|---|---|")
    for name in ("direct", "plugin"):
        s = summary[name]
        print("| {} | {} | {:.3f} | {:.3f} | {:.3f} |".format(name, s["n"], s["p50_ms"], s["p99_ms"], s["cpu_ms"]))
    o = summary["overhead"]
    print("| plugin - direct | | {:+.3f} | {:+.3f} | {:+.3f} |".format(o["p50_ms"], o["p99_ms"], o["cpu_ms"]))
    ok = o["cpu_ms"] <= 0.2 and o["p50_ms"] <= 0.5
    print("goal (<= +0.2 ms CPU, <= +0.5 ms p50): {}".format("met" if ok else "NOT met"))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
