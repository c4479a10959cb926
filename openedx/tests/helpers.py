"""Real servers for the tests: keyd and Vault processes on free loopback ports, a recording proxy."""

import http.client
import http.server
import json
import os
import secrets
import signal
import socket
import subprocess
import tempfile
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

import requests

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
KEYD_BIN = os.path.join(REPO, "bin", "keyd")
VAULT_BIN = os.environ.get("KEYD_VAULT_BIN") or os.path.join(REPO, "bin", "vault")
ISSUER = "http://localhost:18000/oauth2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond: Callable[[], object], timeout: float, what: str, interval: float = 0.02):
    """Polls cond until it returns a truthy value (returned) or fails the test after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after {}s waiting for {}".format(timeout, what))
        time.sleep(interval)


class Process:
    """A child process stopped by its PID when the test ends, with its output kept for failures."""

    def __init__(self, args: List[str], env: Dict[str, str], cwd: Optional[str] = None) -> None:
        self.log = tempfile.NamedTemporaryFile(prefix="keyd-openedx-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(args, env={**os.environ, **env}, cwd=cwd, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        with open(self.log.name, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        os.unlink(self.log.name)


class Keyd:
    """`bin/keyd serve` on a free port; local backend unless args say otherwise."""

    def __init__(self, args: List[str] = (), env: Optional[Dict[str, str]] = None, local: bool = True) -> None:
        self.dir = tempfile.mkdtemp(prefix="keyd-openedx-data-")
        self.port = free_port()
        self.url = "http://127.0.0.1:{}".format(self.port)
        self.signer_token = "signer-" + secrets.token_hex(16)
        self.admin_token = "admin-" + secrets.token_hex(16)
        self.auditor_token = "auditor-" + secrets.token_hex(16)
        env = dict(env or {})
        if local:
            env.update(KEYD_SIGNER_TOKEN=self.signer_token, KEYD_ADMIN_TOKEN=self.admin_token,
                       KEYD_AUDITOR_TOKEN=self.auditor_token)
        argv = [KEYD_BIN, "serve", "--listen", "127.0.0.1:{}".format(self.port),
                "--data-dir", os.path.join(self.dir, "data")] + list(args)
        self.process = Process(argv, env, cwd=self.dir)
        try:
            wait_until(self._ready, 30, "keyd ready on " + self.url, 0.05)
        except AssertionError:
            out = self.process.output()
            self.stop()
            raise AssertionError("keyd did not become ready:\n" + out[-3000:])

    def _ready(self) -> bool:
        if self.process.proc.poll() is not None:
            raise AssertionError("keyd exited:\n" + self.process.output()[-3000:])
        try:
            return requests.get(self.url + "/readyz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    @property
    def jwks_url(self) -> str:
        return self.url + "/.well-known/jwks.json"

    def rotate(self, token: Optional[str] = None) -> dict:
        r = requests.post(self.url + "/v1/rotate", headers={"Authorization": "Bearer " + (token or self.admin_token),
                                                             "Content-Type": "application/json"},
                          data="{}", timeout=5)
        r.raise_for_status()
        return r.json()

    def keys(self, token: Optional[str] = None) -> List[dict]:
        r = requests.get(self.url + "/v1/keys", headers={"Authorization": "Bearer " + (token or self.auditor_token)},
                         timeout=5)
        r.raise_for_status()
        return r.json()["keys"]

    def active_kid(self, token: Optional[str] = None) -> str:
        return [k["kid"] for k in self.keys(token) if k["state"] == "active"][0]

    def edx_setting(self) -> str:
        out = subprocess.run([KEYD_BIN, "jwks", "--server", self.url, "--format", "edx"],
                             capture_output=True, text=True, timeout=10, check=True)
        return out.stdout.strip()

    def stop(self) -> None:
        self.process.stop()
        subprocess.run(["rm", "-rf", self.dir], check=False)


def need_vault() -> None:
    """bin/vault must exist: without it the test is skipped, or fails when CI is set."""
    import pytest

    if not os.path.exists(VAULT_BIN):
        msg = "vault binary not found at {}: run `make vault`".format(VAULT_BIN)
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


class Vault:
    """`bin/vault server -dev` on a free port with a random root token."""

    def __init__(self) -> None:
        self.root = "root-" + secrets.token_hex(12)
        for _ in range(4):  # the dev server also takes port+1: retry on a taken pair
            port = free_port()
            self.addr = "http://127.0.0.1:{}".format(port)
            self.process = Process([VAULT_BIN, "server", "-dev", "-dev-root-token-id=" + self.root,
                                    "-dev-listen-address=127.0.0.1:{}".format(port), "-dev-no-store-token"],
                                   {"HOME": tempfile.gettempdir(), "VAULT_ADDR": "", "VAULT_TOKEN": ""},
                                   cwd=tempfile.gettempdir())
            try:
                wait_until(self._healthy, 30, "vault healthy", 0.05)
                return
            except AssertionError:
                self.process.stop()
        raise AssertionError("vault did not start")

    def _healthy(self) -> bool:
        if self.process.proc.poll() is not None:
            raise AssertionError("vault exited")
        try:
            return requests.get(self.addr + "/v1/sys/health", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def call(self, method: str, path: str, body: Optional[dict] = None, token: Optional[str] = None) -> dict:
        r = requests.request(method, self.addr + "/v1/" + path, json=body,
                             headers={"X-Vault-Token": token or self.root}, timeout=10)
        if r.status_code >= 400:
            raise AssertionError("vault {} {}: {} {}".format(method, path, r.status_code, r.text))
        return r.json() if r.content else {}

    def bootstrap_lms(self, token_ttl: str, token_max_ttl: str) -> Tuple[str, str]:
        """`keyd bootstrap` with the root token, then the AppRole role `lms` (policy keyd-lms-signer) of
        section 2 of the guide; returns its role ID and a secret ID."""
        env = {**os.environ, "VAULT_ADDR": self.addr, "VAULT_TOKEN": self.root}
        subprocess.run([KEYD_BIN, "bootstrap", "--algorithm", "RS512"], env=env, check=True, capture_output=True,
                       timeout=60)
        self.call("POST", "sys/auth/approle", {"type": "approle"})
        self.call("POST", "auth/approle/role/lms", {"token_policies": ["keyd-lms-signer"], "token_ttl": token_ttl,
                                                     "token_max_ttl": token_max_ttl})
        role_id = self.call("GET", "auth/approle/role/lms/role-id")["data"]["role_id"]
        return role_id, self.call("POST", "auth/approle/role/lms/secret-id")["data"]["secret_id"]

    def stop(self) -> None:
        self.process.stop()


Response = Tuple[int, Dict[str, str], bytes]


class RecordingProxy:
    """An HTTP server on 127.0.0.1 that forwards to upstream and records every request.

    `override(method, path, headers)` may answer instead of upstream (a canned 503, garbage, ...)
    by returning (status, headers, body); returning None forwards.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.requests: List[dict] = []
        self.override: Optional[Callable[[str, str, Dict[str, str]], Optional[Response]]] = None
        self._cond = threading.Condition()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items()}
                with proxy._cond:
                    proxy.requests.append({"method": self.command, "path": self.path, "headers": headers,
                                           "time": time.monotonic(), "pid_seen": None})
                    proxy._cond.notify_all()
                answer = proxy.override(self.command, self.path, headers) if proxy.override else None
                if answer is None:
                    answer = proxy._forward(self.command, self.path, headers, body)
                status, rheaders, rbody = answer
                self.send_response(status)
                for k, v in rheaders.items():
                    if k.lower() not in ("content-length", "connection", "transfer-encoding", "date", "server"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(rbody)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(rbody)

            do_GET = do_POST = do_HEAD = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:{}".format(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _forward(self, method: str, path: str, headers: Dict[str, str], body: bytes) -> Response:
        host, port = self.upstream.split("//", 1)[1].split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            fwd = {k: v for k, v in headers.items() if k.lower() not in ("host", "connection")}
            conn.request(method, path, body=body or None, headers=fwd)
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            conn.close()

    def matching(self, path_prefix: str) -> List[dict]:
        with self._cond:
            return [r for r in self.requests if r["path"].startswith(path_prefix)]

    def wait_for(self, pred: Callable[[dict], bool], timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for r in self.requests:
                    if pred(r):
                        return r
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out after {}s waiting for {}".format(timeout, what))
                self._cond.wait(left)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def canned(status: int, body: object, headers: Optional[Dict[str, str]] = None) -> Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return status, {"Content-Type": "application/json", **(headers or {})}, raw


class Blackhole:
    """A TCP server that accepts connections and never answers (a hung keyd). Counts connections.

    With drip, it answers a never-ending header one byte every 0.1 s (a peer that is slow but never
    idle long enough for a per-read timeout), for 3 s, or until the client closes with forever.
    closed() counts the connections the client has closed. Its threads are named "test-blackhole"."""

    def __init__(self, drip: bool = False, forever: bool = False) -> None:
        self.drip = drip
        self.forever = forever
        self.client_closed = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = "http://127.0.0.1:{}".format(self.sock.getsockname()[1])
        self.accepted: List[socket.socket] = []
        self._stop = False
        self._cond = threading.Condition()
        self.thread = threading.Thread(target=self._accept, name="test-blackhole", daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(c)
            if self.drip:
                threading.Thread(target=self._drip, args=(c,), name="test-blackhole", daemon=True).start()

    def _drip(self, c: socket.socket) -> None:
        try:
            c.recv(65536)
            c.sendall(b"HTTP/1.1 200 OK\r\nX-Drip: ")
            n = 0
            while self.forever or n < 30:  # 3 s, then the connection closes (unless forever)
                if self._stop:
                    return
                c.sendall(b"a")
                n += 1
                time.sleep(0.1)
            c.close()
        except OSError:  # the client closed its end: sending fails
            with self._cond:
                self.client_closed += 1
                self._cond.notify_all()

    def wait_closed(self, n: int, timeout: float) -> None:
        """Waits until the client has closed n dripped connections."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.client_closed < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("the client closed {} of {} dripped connections".format(self.client_closed, n))
                self._cond.wait(left)

    def stop(self) -> None:
        self._stop = True
        self.sock.close()
        for c in self.accepted:
            c.close()


class FakeClock:
    """The IDA key set's clock (keyd_openedx.ida.keyset.Clock) under a test's control: time moves only
    when the test advances it, and the refresher's waits end when fake time reaches them.

    waits records (start, seconds) of every wait the refresher began, so a test can see the pacing
    it chose; next_wait() blocks (real time, bounded) until the refresher waits again."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._epoch = 1.8e9 - start
        self._cond = threading.Condition()
        self.waits: List[Tuple[float, float]] = []
        self._waiting = 0

    def monotonic(self) -> float:
        with self._cond:
            return self._now

    def time(self) -> float:
        with self._cond:
            return self._epoch + self._now

    def wait(self, event: threading.Event, timeout: float) -> bool:
        with self._cond:
            deadline = self._now + timeout
            self.waits.append((self._now, timeout))
            self._waiting += 1
            self._cond.notify_all()
            try:
                while not event.is_set() and self._now < deadline:
                    self._cond.wait(0.05)  # stop() sets the event without telling this clock
            finally:
                self._waiting -= 1
            return event.is_set()

    def advance(self, seconds: float) -> None:
        with self._cond:
            self._now += seconds
            self._cond.notify_all()

    def next_wait(self, after: int, timeout: float = 10) -> Tuple[float, float]:
        """Blocks until the refresher has begun more than `after` waits; returns the newest (start, seconds)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.waits) <= after:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("the refresher began no wait number {} within {}s".format(after + 1, timeout))
                self._cond.wait(left)
            return self.waits[after]

    def run_out(self, index: int, timeout: float = 10) -> Tuple[float, float]:
        """Waits for wait number index and moves fake time to its end; returns it."""
        start, seconds = self.next_wait(index, timeout)
        with self._cond:
            self._now = max(self._now, start + seconds)
            self._cond.notify_all()
        return start, seconds


class User:
    """The few attributes of a Django user that _create_jwt reads."""

    def __init__(self, id=7, username="staff", email="staff@example.com", first_name="Ada", last_name="Lovelace",
                 is_active=True, is_staff=True, is_superuser=False) -> None:
        self.id, self.username, self.email = id, username, email
        self.first_name, self.last_name = first_name, last_name
        self.is_active, self.is_staff, self.is_superuser = is_active, is_staff, is_superuser

    def get_full_name(self) -> str:
        return "{} {}".format(self.first_name, self.last_name).strip()


APPS = ["keyd_openedx.lms.apps.KeydSignerConfig", "keyd_openedx.ida.apps.KeydJwksConfig"]


def django_apps(apps=APPS, **values):
    """Settings first, then INSTALLED_APPS (whose change runs every app's ready() at once)."""
    from contextlib import ExitStack

    from django.test import override_settings

    stack = ExitStack()
    stack.enter_context(override_settings(**values))
    try:
        stack.enter_context(override_settings(INSTALLED_APPS=list(apps)))
    except BaseException:
        stack.close()
        raise
    return stack


def held_set() -> str:
    from django.conf import settings

    return settings.JWT_AUTH.get("JWT_PUBLIC_SIGNING_JWK_SET")


def decode_as_ida(token: str, audience: str = "openedx") -> dict:
    """Verifies token as edx-drf-extensions does, with the set the IDA app holds now."""
    from keyd_openedx.jwks import verify_with_setting

    return verify_with_setting(token, held_set(), audience)


def start_request() -> None:
    """What a web worker does on every request: Django's request_started signal."""
    from django.core.signals import request_started

    request_started.send(sender=None)
