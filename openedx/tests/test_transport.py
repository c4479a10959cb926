"""keyd-openedx's HTTP transport: every attempt bounded connect-to-last-byte without a thread per call,
keep-alive connections reused per process (and never shared with a forked child)."""

import http.server
import os
import socket
import threading
import time

import pytest
from helpers import Blackhole, User, django_apps

from keyd_openedx import KeydSigningError
from keyd_openedx.transport import Client, InvalidResponse, ReadTimeout, TLSError
from openedx.core.djangoapps.oauth_dispatch import jwt as lms_jwt


class Server:
    """A loopback HTTP/1.1 server that records, per request, the client's port (one per connection).
    handle(handler) answers; close_after_first: a connection's second request is read, then the
    connection is closed without an answer (a server whose idle timeout fired at that moment)."""

    def __init__(self, body=b"{}", status=200, headers=None, close_after_first=False, tls=None):
        self.ports = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK stall

            def log_message(self, *args):
                pass

            def do_GET(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                if close_after_first and self.client_address[1] in server.ports:
                    self.close_connection = True
                    return
                server.ports.append(self.client_address[1])
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # a client gone (a child's exit) is no news
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.url = "{}://localhost:{}/x".format(scheme, self.httpd.server_address[1])
        threading.Thread(target=self.httpd.serve_forever, name="test-server", daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    started = []

    def start(**kw):
        s = Server(**kw)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def own_threads():
    return {t for t in threading.enumerate() if not t.name.startswith("test-")}


def test_connections_are_kept_alive_and_reused(server):
    s = server()
    c = Client()
    for _ in range(50):
        assert c.request("GET", s.url, 2).status_code == 200
    assert c.connections_opened == 1 and len(set(s.ports)) == 1 and len(s.ports) == 50


def test_a_connection_the_peer_closed_is_replaced_within_the_attempt(server):
    """The peer closes a kept-alive connection as the next request arrives: that request is sent
    again once on a new connection, so the caller sees an answer (no retry, no 100 ms pause)."""
    s = server(close_after_first=True)
    c = Client()
    for _ in range(5):
        assert c.request("POST", s.url, 2, data=b"{}").status_code == 200
    assert c.connections_opened == 5 and len(set(s.ports)) == 5


def test_a_forked_child_never_uses_its_parents_connections(server):
    s = server()
    c = Client()
    c.request("GET", s.url, 2)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            c.request("GET", s.url, 2)
            c.request("GET", s.url, 2)
            code = 0
        finally:
            os._exit(code)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    c.request("GET", s.url, 2)  # the parent's connection still works: the child left it alone
    parent, child = s.ports[0], s.ports[1]
    assert s.ports == [parent, child, child, parent] and parent != child


def test_an_oversized_answer_is_refused(server):
    s = server(body=b"x" * (5 << 20))
    with pytest.raises(InvalidResponse) as err:
        Client().request("GET", s.url, 5)
    assert not err.value.retriable


def test_get_follows_a_redirect_within_the_same_deadline(server):
    target = server(body=b'{"ok": true}')
    s = server(status=301, headers={"Location": target.url})
    r = Client().request("GET", s.url, 2)
    assert r.status_code == 200 and r.json() == {"ok": True} and r.url == target.url


def test_tls_with_ca_bundle_and_untrusted_certificate(server, tmp_path):
    import datetime
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"))
    s = server(tls=ctx)
    c = Client(str(tmp_path / "cert.pem"))
    for _ in range(3):
        assert c.request("GET", s.url, 2).status_code == 200
    assert c.connections_opened == 1
    with pytest.raises(TLSError):
        Client(True).request("GET", s.url, 2)  # the system's CAs do not trust it


def test_a_peer_dripping_forever_leaks_no_thread(jwt_auth, installed):
    """A peer that sends a byte every 0.1 s for ever: every sign fails within its bound, and nothing is
    left behind: no thread, no open connection (the peer sees each one closed at once)."""
    timeout = 0.3
    drip = Blackhole(drip=True, forever=True)
    try:
        settings = dict(KEYD_SIGNING={"URL": drip.url, "TOKEN": "t-secret-value", "TIMEOUT": timeout},
                        JWT_AUTH=dict(jwt_auth))
        with django_apps(apps=["keyd_openedx.lms.apps.KeydSignerConfig"], **settings):
            before = own_threads()
            for _ in range(3):
                start = time.monotonic()
                with pytest.raises(KeydSigningError) as err:
                    lms_jwt._create_jwt(User(), use_asymmetric_key=True, grant_type="password")
                assert err.value.code == "keyd_unreachable" and "ReadTimeout" in err.value.message
                assert time.monotonic() - start < 2 * timeout + 0.5
            assert own_threads() == before
            drip.wait_closed(6, 2)  # 3 signs x 2 attempts, each connection closed by the client
    finally:
        drip.stop()


def test_dripping_peer_bounds_each_attempt_as_a_whole():
    """The deadline is the attempt's, not each read's: ReadTimeout after timeout, although a byte
    arrives every 0.1 s."""
    drip = Blackhole(drip=True, forever=True)
    try:
        before = own_threads()
        start = time.monotonic()
        with pytest.raises(ReadTimeout):
            Client().request("GET", drip.url + "/", 0.45)
        assert 0.45 <= time.monotonic() - start < 0.7
        assert own_threads() == before
        drip.wait_closed(1, 2)
    finally:
        drip.stop()


def test_connect_timeout_to_a_blackholed_address():
    """A full listen backlog: the kernel drops SYNs, the connect hangs: bounded by the timeout."""
    from keyd_openedx.transport import ConnectTimeout

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):  # fill the backlog so the next SYN is dropped
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(("127.0.0.1", port))
            fillers.append(f)
        start = time.monotonic()
        with pytest.raises((ConnectTimeout, ReadTimeout)):
            Client().request("GET", "http://127.0.0.1:{}/".format(port), 0.3)
        assert time.monotonic() - start < 0.6
    finally:
        for f in fillers:
            f.close()
        listener.close()
