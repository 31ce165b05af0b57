"""Probes of a running SeaweedFS from outside Locard: its sockets read from /proc, raw HTTP, TLS and h2 frames."""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from storage.seaweed import SeaweedServer, weed_binary
from storage.seaweed_security import SeaweedSecurity

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000")  # + empty SETTINGS


# --- the process as seen from /proc -------------------------------------------------------------------------


def _process_tree(pid: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
    tree, grew = {pid}, True
    while grew:
        children = {child for child, parent in parents.items() if parent in tree} - tree
        tree |= children
        grew = bool(children)
    return tree


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for member in _process_tree(pid):
        fd_dir = Path(f"/proc/{member}/fd")
        for fd in fd_dir.iterdir() if fd_dir.exists() else ():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    return inodes


def listening_tcp(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket of the process tree, IPv4 and IPv6."""
    inodes, found = _socket_inodes(pid), set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                address, port = fields[1].split(":")
                raw = bytes.fromhex(address)
                text = socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6,
                                        b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4)))
                found.add((text, int(port, 16)))
    return found


def listening_unix(pid: int) -> set[str]:
    """Paths of every listening Unix socket of the process tree."""
    inodes, found = _socket_inodes(pid), set()
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and fields[6] in inodes and int(fields[3], 16) & 0x10000:  # __SO_ACCEPTCON
            found.add(fields[7])
    return found


# --- probes --------------------------------------------------------------------------------------------------


def tcp(port: int) -> Callable[[], socket.socket]:
    return lambda: socket.create_connection(("127.0.0.1", port), timeout=5)


def unix(path: str) -> Callable[[], socket.socket]:
    def connect() -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5)
        sock.connect(path)
        return sock
    return connect


def recv_all(sock: socket.socket | ssl.SSLSocket, limit: int = 4096) -> bytes:
    """Read until the peer closes, `limit` bytes have come, or nothing comes for the socket's timeout."""
    data = b""
    while len(data) < limit:
        try:
            chunk = sock.recv(limit)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        data += chunk
    return data


def plain_http(connect: Callable[[], socket.socket], method: str, path: str) -> tuple[int | None, bytes]:
    """Status and body of a plain HTTP/1.1 request; (None, b"") when the peer drops it without an answer."""
    with connect() as sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n"
                     f"Content-Length: 0\r\nConnection: close\r\n\r\n".encode())
        raw = recv_all(sock, 1 << 16)
    if not raw.startswith(b"HTTP/"):
        return None, raw
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def _tls_context(security: SeaweedSecurity | None, *, alpn: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols([alpn])
    if security is not None:
        context.load_cert_chain(security.cert_path("client"), security.key_path("client"))
    return context


def tls_exchange(connect: Callable[[], socket.socket], security: SeaweedSecurity | None, *, alpn: str,
                 payload: bytes, limit: int = 4096) -> bytes:
    """Send `payload` over TLS (with the stack's client certificate when `security` is given)."""
    with connect() as raw, _tls_context(security, alpn=alpn).wrap_socket(raw) as tls:
        tls.sendall(payload)
        return recv_all(tls, limit)


def assert_certificate_required(connect: Callable[[], socket.socket], *, alpn: str, payload: bytes) -> None:
    """The TLS session dies (alert or close) before any answer when no client certificate is offered."""
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        tls_exchange(connect, None, alpn=alpn, payload=payload)


def https_request(seaweed: SeaweedServer, method: str, path: str) -> tuple[int | None, bytes]:
    security = seaweed.security
    context = _tls_context(security, alpn="http/1.1")
    connection = http.client.HTTPSConnection("127.0.0.1", seaweed.config.ports["filer"], context=context, timeout=10)
    try:
        connection.request(method, path, headers={"Accept": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def is_settings_frame(data: bytes) -> bool:
    return len(data) >= 9 and data[3] == 0x04


def run_weed(args: list[str], cwd: Path, home: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """A SeaweedFS client run from `cwd`; it reads security.toml from there or from `home`/.seaweedfs."""
    env = {**os.environ, "HOME": str(home)}
    return subprocess.run([str(weed_binary()), *args], cwd=cwd, env=env, input=stdin, capture_output=True,
                          text=True, timeout=90, check=False)
