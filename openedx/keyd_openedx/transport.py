"""HTTP for keyd-openedx: a small client on http.client, every attempt bounded as a whole.

TIMEOUT bounds an attempt from connect to last byte. The deadline is fixed when the attempt starts
and every socket operation (each connect, the TLS handshake, each send, each receive) is given only
what is left of it, so a peer that drips a byte at a time cannot stretch an attempt, and no thread
is started per call (none is left behind when a peer never stops). Name resolution is the one step
the system resolver bounds (its own timeout, resolv.conf); it happens once per new connection.

Connections are kept alive and reused within a process (one idle pool per process, thread-safe); a
forked child never touches its parent's connections or lock. A connection the peer closed while
idle is noticed before reuse, and a request that fails on a reused connection before any answer
byte is sent again once on a new connection within the same deadline. Redirects are followed for
GET only (at most 3, same deadline). Environment proxies (HTTP(S)_PROXY) are not used: keyd and
Vault are reached directly.
"""

import http.client
import io
import json as _json
import logging
import os
import select
import socket
import ssl
import threading
import time
from functools import lru_cache
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import urljoin, urlsplit

from . import USER_AGENT

log = logging.getLogger(__name__)

MAX_BODY = 4 << 20  # bytes: keyd's and Vault's answers are a few KiB
MAX_IDLE = 16  # idle connections kept per host and process
MAX_REDIRECTS = 3


class TransportError(Exception):
    """A request that got no complete answer. `retriable`: a network failure worth one more try."""

    retriable = True


class ConnectionFailed(TransportError):
    """The connection was refused, reset or closed before a complete answer."""


class TLSError(ConnectionFailed):
    """The TLS handshake failed (certificate not trusted, wrong host name, protocol)."""


class ConnectTimeout(TransportError):
    """No connection within the attempt's deadline."""


class ReadTimeout(TransportError):
    """Connected, but no complete answer within the attempt's deadline."""


class InvalidResponse(TransportError):
    """The peer answered something that is not an HTTP response this client accepts."""

    retriable = False


class InvalidRequest(TransportError):
    """The URL or a header cannot be sent (never retried)."""

    retriable = False


class Response:
    """An answer read completely: status_code, headers (case-insensitive get), content, json()."""

    __slots__ = ("status_code", "headers", "content", "url")

    def __init__(self, status_code: int, headers: Any, content: bytes, url: str) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content
        self.url = url

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not."""
        return _json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


class _Deadline:
    __slots__ = ("at",)

    def __init__(self) -> None:
        self.at = 0.0

    def left(self) -> float:
        left = self.at - time.monotonic()
        if left <= 0:
            raise socket.timeout("the attempt's deadline passed")
        return left


class _DeadlineReader(io.RawIOBase):
    """The response's byte stream: each receive gets what is left of the deadline, never more."""

    def __init__(self, sock: socket.socket, deadline: _Deadline) -> None:
        self._sock = sock
        self._deadline = deadline
        sock._io_refs += 1  # as socket.makefile does: the fd stays open until this reader closes

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed:
            super().close()
            self._sock._decref_socketios()

    def readinto(self, b) -> int:
        self._sock.settimeout(self._deadline.left())
        return self._sock.recv_into(b)


class _SockShim:
    """What http.client.HTTPResponse needs of a socket: makefile("rb") (here, a deadline reader)."""

    __slots__ = ("_sock", "_deadline")

    def __init__(self, sock: socket.socket, deadline: _Deadline) -> None:
        self._sock, self._deadline = sock, deadline

    def makefile(self, mode: str, *args: Any, **kwargs: Any) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline))


class _Connection(http.client.HTTPConnection):
    """One keep-alive connection whose every socket operation is bounded by self.deadline."""

    def __init__(self, host: str, port: int, tls: Optional[ssl.SSLContext]) -> None:
        super().__init__(host, port)
        self.tls = tls
        self.deadline = _Deadline()
        deadline = self.deadline
        self.response_class = lambda sock, *a, **kw: http.client.HTTPResponse(_SockShim(sock, deadline), *a, **kw)
        self.connecting = False

    def connect(self) -> None:
        self.connecting = True
        last: Optional[BaseException] = None
        for family, kind, proto, _, addr in socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM):
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(self.deadline.left())
                sock.connect(addr)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self.tls is not None:
                    sock.settimeout(self.deadline.left())  # the whole handshake, not each read
                    sock = self.tls.wrap_socket(sock, server_hostname=self.host)
                self.sock = sock
                self.connecting = False
                log.debug("keyd-openedx: new connection to %s:%s", self.host, self.port)
                return
            except BaseException as exc:
                sock.close()
                last = exc
                if isinstance(exc, (socket.timeout, ssl.SSLError, ssl.CertificateError)):
                    break  # out of time, or the peer is there but not acceptable
        raise last if last is not None else OSError("no address for {}".format(self.host))

    def send(self, data: Any) -> None:
        if self.sock is None:
            self.connect()
        self.sock.settimeout(self.deadline.left())  # sendall: the timeout bounds the whole send
        super().send(data)

    def dropped(self) -> bool:
        """True when the idle connection cannot be reused (closed by the peer, or unread bytes)."""
        sock = self.sock
        if sock is None:
            return True
        try:
            if hasattr(select, "poll"):
                p = select.poll()
                p.register(sock, select.POLLIN)
                return bool(p.poll(0))
            return bool(select.select([sock], [], [], 0)[0])
        except (OSError, ValueError):
            return True


@lru_cache(maxsize=64)
def _parse(url: str) -> Tuple[str, str, int, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest("not an http(s) URL: {}".format(url))
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise InvalidRequest("bad port in {}".format(url)) from None
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.scheme, parts.hostname, port, path


_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


class Client:
    """The HTTP client of one component (signer, key set): its own idle pool per process.

    verify: True (the system's CAs), a CA file path, or False (no verification; tests only).
    """

    def __init__(self, verify: Any = True, user_agent: str = USER_AGENT, max_body: int = MAX_BODY) -> None:
        self.verify = verify
        self.user_agent = user_agent
        self.max_body = max_body
        self._tls: Optional[ssl.SSLContext] = None
        self._pid = -1
        self._lock = threading.Lock()
        self._idle: Dict[Tuple[str, str, int], List[_Connection]] = {}
        self.connections_opened = 0

    # -- the per-process pool ----------------------------------------------------------------

    def _pool(self) -> Dict[Tuple[str, str, int], List[_Connection]]:
        pid = os.getpid()
        if self._pid != pid:
            # A forked child: the parent's connections and lock are left alone (never closed here:
            # a TLS close would end the parent's session), and this process starts its own.
            self._lock, self._idle, self._pid = threading.Lock(), {}, pid
        return self._idle

    def _context(self) -> ssl.SSLContext:
        if self._tls is None:
            if self.verify is False:
                ctx = ssl.create_default_context()
                ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            else:
                ctx = ssl.create_default_context(cafile=self.verify if isinstance(self.verify, str) else None)
            self._tls = ctx
        return self._tls

    def _take(self, key: Tuple[str, str, int]) -> Tuple[_Connection, bool]:
        pool = self._pool()
        with self._lock:
            idle = pool.get(key)
            while idle:
                conn = idle.pop()
                if not conn.dropped():
                    return conn, True
                conn.close()
            self.connections_opened += 1
        scheme, host, port = key
        return _Connection(host, port, self._context() if scheme == "https" else None), False

    def _give_back(self, key: Tuple[str, str, int], conn: _Connection) -> None:
        pool = self._pool()
        with self._lock:
            idle = pool.setdefault(key, [])
            if len(idle) < MAX_IDLE and conn.sock is not None:
                idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        """Closes this process's idle connections."""
        pool = self._pool()
        with self._lock:
            conns = [c for idle in pool.values() for c in idle]
            pool.clear()
        for c in conns:
            c.close()

    # -- requests ----------------------------------------------------------------------------

    def request(self, method: str, url: str, timeout: float, headers: Optional[Dict[str, str]] = None,
                data: Optional[bytes] = None, json: Any = None) -> Response:
        """One attempt: connect to last byte within timeout seconds, or a TransportError."""
        deadline = time.monotonic() + timeout
        if json is not None:
            data = _json.dumps(json, separators=(",", ":")).encode("utf-8")
            headers = {"Content-Type": "application/json", **(headers or {})}
        for _ in range(MAX_REDIRECTS + 1):
            resp = self._once(method, url, deadline, timeout, headers, data)
            if method != "GET" or resp.status_code not in (301, 302, 303, 307, 308) \
                    or not resp.headers.get("Location"):
                return resp
            url = urljoin(url, resp.headers["Location"])
        return resp

    def _once(self, method: str, url: str, deadline: float, timeout: float, headers: Optional[Dict[str, str]],
              data: Optional[bytes]) -> Response:
        scheme, host, port, path = _parse(url)
        key = (scheme, host, port)
        all_headers = {"User-Agent": self.user_agent}
        if headers:
            all_headers.update(headers)
        for attempt in (0, 1):
            conn, reused = self._take(key)
            conn.deadline.at, conn.connecting = deadline, False
            started = False
            try:
                try:
                    conn.request(method, path, body=data, headers=all_headers)
                    r = conn.getresponse()
                    started = True
                    content = r.read(self.max_body + 1)
                    if len(content) > self.max_body:
                        raise InvalidResponse("the answer is larger than {} bytes".format(self.max_body))
                    if not r.isclosed():
                        r.read()
                except _STALE:
                    if reused and not started and attempt == 0:
                        conn.close()  # the peer closed it while idle: once more on a new connection
                        continue
                    raise
            except BaseException as exc:
                conn.close()
                raise _translate(exc, conn.connecting, method, url, timeout) from None
            if r.will_close or conn.sock is None:
                conn.close()
            else:
                self._give_back(key, conn)
            return Response(r.status, r.msg, content, url)
        raise AssertionError("unreachable")


def _translate(exc: BaseException, connecting: bool, method: str, url: str, timeout: float) -> BaseException:
    """The TransportError for what http.client, ssl or the socket raised (other exceptions as they are)."""
    if isinstance(exc, TransportError):
        return exc
    if isinstance(exc, socket.timeout):
        kind: Callable[[str], TransportError] = ConnectTimeout if connecting else ReadTimeout
        return kind("{} {} gave no complete answer within {:g}s".format(method, url, timeout))
    if isinstance(exc, (ssl.SSLError, ssl.CertificateError)):
        return TLSError("TLS with {} failed: {}".format(url, exc))
    if isinstance(exc, http.client.RemoteDisconnected):
        return ConnectionFailed("{} closed the connection without an answer".format(url))
    if isinstance(exc, (http.client.InvalidURL, UnicodeError)):
        return InvalidRequest("cannot send {} {}: {}".format(method, url, exc))
    if isinstance(exc, http.client.IncompleteRead):
        return ConnectionFailed("{} closed the connection in the middle of its answer".format(url))
    if isinstance(exc, http.client.HTTPException):
        return InvalidResponse("{} answered something that is not HTTP ({})".format(url, type(exc).__name__))
    if isinstance(exc, OSError):
        return ConnectionFailed("cannot reach {}: {}".format(url, exc.strerror or exc))
    if isinstance(exc, ValueError):  # http.client: a header value with a line break (its text names
        # the value, which may be a token: never repeated here)
        return InvalidRequest("cannot send {} {}: a header holds a character HTTP forbids".format(method, url))
    return exc
