"""The embedded SeaweedFS seen from outside Locard: only the authenticated S3 endpoint answers.

Every check goes at the running `weed` process as another program on the machine would: its listening
sockets are read from /proc, not from Locard's configuration, and probed with plain HTTP, TLS without a
client certificate, and SeaweedFS's own command-line clients run with and without the stack's security.toml.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import stat
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from minio import Minio
from minio.commonconfig import COMPLIANCE, GOVERNANCE
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from minio.retention import Retention

from storage.objectstore import S3ObjectStore, StoredObject
from storage.seaweed import SeaweedConfig, SeaweedError, SeaweedServer
from storage.seaweed_security import COMPONENTS, JWT_SECTIONS, SeaweedSecurity
from tests.seaweed_probes import (
    H2_PREFACE,
    assert_certificate_required,
    https_request,
    is_settings_frame,
    listening_tcp,
    listening_unix,
    plain_http,
    recv_all,
    run_weed,
    tcp,
    tls_exchange,
    unix,
)

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads sockets from /proc (Linux)")

PLAIN_PATHS = ("/", "/dir/assign", "/dir/lookup?volumeId=1", "/vol/status", "/cluster/status", "/ui/index.html",
               "/status", "/metrics", "/buckets/")


# --- fixtures -------------------------------------------------------------------------------------------------


@pytest.fixture
def evidence(s3_store: S3ObjectStore, tmp_path: Path) -> tuple[StoredObject, bytes]:
    data = os.urandom(70_000)
    path = tmp_path / "evidence.bin"
    path.write_bytes(data)
    stored = s3_store.put_evidence("cases/SEC/evidence.bin", path, sha256=hashlib.sha256(data).hexdigest(),
                                   content_type="application/octet-stream")
    return stored, data


def assert_intact(store: S3ObjectStore, stored: StoredObject, data: bytes, tmp_path: Path) -> None:
    dest = tmp_path / "downloaded.bin"
    digest = store.download(stored.bucket, stored.key, stored.version_id, dest,
                            expected_sha256=hashlib.sha256(data).hexdigest())
    assert digest == hashlib.sha256(data).hexdigest() and dest.read_bytes() == data
    versions = {v.version_id for v in store.list_versions(stored.bucket, stored.key)}
    assert stored.version_id in versions


# --- tests ----------------------------------------------------------------------------------------------------


def test_the_process_listens_only_on_its_ports_on_loopback(seaweed: SeaweedServer) -> None:
    pid = seaweed.running_pid()
    assert pid is not None
    listening = listening_tcp(pid)
    assert {address for address, _ in listening} == {"127.0.0.1"}
    # Nothing beyond the eight ports Locard asked for: no metrics, pprof, Iceberg, Lance, WebDAV or IAM port.
    assert {port for _, port in listening} == set(seaweed.config.ports.values())
    assert listening_unix(pid) == {str(seaweed.root / "filer.sock"), str(seaweed.root / "s3.sock"),
                                   *map(str, seaweed.local_grpc_sockets())}
    assert stat.S_IMODE(seaweed.root.stat().st_mode) == 0o700  # the socket files in it are out of others' reach


def test_plain_http_gets_nothing_from_any_port_but_s3(seaweed: SeaweedServer, s3_store: S3ObjectStore,
                                                      evidence: tuple[StoredObject, bytes], tmp_path: Path) -> None:
    stored, data = evidence
    pid = seaweed.running_pid()
    assert pid is not None
    s3_port = seaweed.config.ports["s3"]
    ports = {port for _, port in listening_tcp(pid)} - {s3_port}
    assert len(ports) == 7
    version_path = f"/buckets/{stored.bucket}/{stored.key}.versions/v_{stored.version_id}"
    for port in sorted(ports):
        for method in ("GET", "PUT", "POST", "DELETE"):
            for path in (*PLAIN_PATHS, f"/buckets/{stored.bucket}/", version_path):
                status, body = plain_http(tcp(port), method, path)
                assert status is None or status == 400, (port, method, path, status, body[:200])
                assert stored.bucket.encode() not in body and b"fid" not in body, (port, method, path)
    # The S3 port itself answers anonymous requests with AccessDenied and nothing else.
    for method, path in (("GET", "/"), ("GET", f"/{stored.bucket}?versions"),
                         ("GET", f"/{stored.bucket}/{stored.key}?versionId={stored.version_id}"),
                         ("DELETE", f"/{stored.bucket}/{stored.key}?versionId={stored.version_id}")):
        for connect in (tcp(s3_port), unix(str(seaweed.root / "s3.sock"))):
            status, body = plain_http(connect, method, path)
            assert status == 403 and b"AccessDenied" in body, (method, path, status)
    assert_intact(s3_store, stored, data, tmp_path)


def test_every_internal_port_requires_the_client_certificate(seaweed: SeaweedServer) -> None:
    security = seaweed.security
    ports = seaweed.config.ports
    request = b"GET /cluster/status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    for name in ("master", "volume", "filer"):
        assert_certificate_required(tcp(ports[name]), alpn="http/1.1", payload=request)
    grpc_endpoints = [tcp(ports[f"{name}_grpc"]) for name in ("master", "volume", "filer", "s3")]
    grpc_endpoints += [unix(str(path)) for path in seaweed.local_grpc_sockets()]
    for connect in grpc_endpoints:
        assert_certificate_required(connect, alpn="h2", payload=H2_PREFACE)
        # An insecure (plaintext) gRPC client gets no HTTP/2 session either.
        with connect() as sock:
            sock.sendall(H2_PREFACE)
            assert not is_settings_frame(recv_all(sock, limit=9))
        # The same exchange with the stack's certificate does reach gRPC: the control that makes this test bite.
        assert is_settings_frame(tls_exchange(connect, security, alpn="h2", payload=H2_PREFACE, limit=9))
    master_status = tls_exchange(tcp(ports["master"]), security, alpn="http/1.1", payload=request)
    assert b"200 OK" in master_status and b"IsLeader" in master_status


def test_grpc_clients_without_the_stack_configuration_are_refused(seaweed: SeaweedServer, tmp_path: Path) -> None:
    ports = seaweed.config.ports
    outsider = tmp_path / "outsider"  # no security.toml here nor in $HOME/.seaweedfs
    outsider.mkdir()
    probe = outsider / "probe.txt"
    probe.write_text("written by an outsider")
    master = f"-master=127.0.0.1:{ports['master']}.{ports['master_grpc']}"
    filer_target = f"http://127.0.0.1:{ports['filer']}.{ports['filer_grpc']}/locard-security-probe/"

    upload = run_weed(["upload", master, str(probe)], cwd=outsider, home=outsider)
    assert upload.returncode != 0 and '"fid"' not in upload.stdout
    assert "server preface" in upload.stdout + upload.stderr
    copy = run_weed(["filer.copy", str(probe), filer_target], cwd=outsider, home=outsider)
    assert copy.returncode != 0 and "server preface" in copy.stdout + copy.stderr

    # The same commands with the stack's security.toml (read from the working directory) succeed.
    upload = run_weed(["upload", master, str(probe)], cwd=seaweed.root, home=outsider)
    assert upload.returncode == 0 and '"fid"' in upload.stdout, upload.stdout + upload.stderr
    copy = run_weed(["filer.copy", str(probe), filer_target], cwd=seaweed.root, home=outsider)
    assert copy.returncode == 0, copy.stdout + copy.stderr


def test_the_filer_http_api_cannot_list_or_delete_evidence(seaweed: SeaweedServer, s3_store: S3ObjectStore,
                                                            evidence: tuple[StoredObject, bytes],
                                                            tmp_path: Path) -> None:
    """The reported attack: list the bucket through the filer, DELETE the version file, break the download."""
    stored, data = evidence
    outsider = tmp_path / "home"
    outsider.mkdir()
    directory = f"/buckets/{stored.bucket}/{stored.key}.versions"
    # The version file exists where the attack found it (seen through the stack's own gRPC access).
    ports = seaweed.config.ports
    listing = run_weed(["shell", f"-master=127.0.0.1:{ports['master']}.{ports['master_grpc']}",
                        f"-filer=127.0.0.1:{ports['filer']}.{ports['filer_grpc']}"],
                       cwd=seaweed.root, home=outsider, stdin=f"fs.ls {directory}\n")
    version_file = f"{directory}/v_{stored.version_id}"
    assert f"v_{stored.version_id}" in listing.stdout, listing.stdout + listing.stderr
    filer_port = seaweed.config.ports["filer"]
    routes: list[tuple[str, Callable[[str, str], tuple[int | None, bytes]]]] = [
        ("plain http", lambda method, path: plain_http(tcp(filer_port), method, path)),
        ("local socket", lambda method, path: plain_http(unix(str(seaweed.root / "filer.sock")), method, path)),
        ("https with the stack certificate", lambda method, path: https_request(seaweed, method, path)),
    ]
    for route, request in routes:
        for path in (f"/buckets/{stored.bucket}/", f"{directory}/", version_file):
            status, body = request("GET", path)
            assert status is None or status >= 400, (route, path, status)
            assert stored.version_id.encode() not in body and data[:64] not in body, (route, path)
        status, _ = request("DELETE", version_file)
        assert status is None or status >= 400, (route, status)
    assert_intact(s3_store, stored, data, tmp_path)


def test_s3_refuses_anonymous_and_wrong_credentials(seaweed: SeaweedServer, s3_store: S3ObjectStore,
                                                    evidence: tuple[StoredObject, bytes], tmp_path: Path) -> None:
    stored, data = evidence
    url = f"http://{seaweed.config.s3_endpoint}/{stored.bucket}/{stored.key}?versionId={stored.version_id}"
    for method in ("GET", "DELETE"):
        with pytest.raises(urllib.error.HTTPError) as anonymous:
            urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10)
        assert anonymous.value.code == 403
    wrong_secret = Minio(seaweed.config.s3_endpoint, access_key=seaweed.config.access_key,
                         secret_key=seaweed.config.secret_key[::-1], secure=False)
    wrong_key = Minio(seaweed.config.s3_endpoint, access_key="locard-000000000000",
                      secret_key=seaweed.config.secret_key, secure=False)
    for client, code in ((wrong_secret, "SignatureDoesNotMatch"), (wrong_key, "InvalidAccessKeyId")):
        for attempt in (lambda c=client: c.get_object(stored.bucket, stored.key, version_id=stored.version_id),
                        lambda c=client: c.remove_object(stored.bucket, stored.key, version_id=stored.version_id),
                        lambda c=client: list(c.list_objects(stored.bucket, include_version=True))):
            with pytest.raises(S3Error) as refused:
                attempt()
            assert refused.value.code in (code, "AccessDenied")
    assert_intact(s3_store, stored, data, tmp_path)


def test_the_stack_identity_cannot_delete_or_unlock_a_locked_version(s3_store: S3ObjectStore,
                                                                    evidence: tuple[StoredObject, bytes],
                                                                    tmp_path: Path) -> None:
    stored, data = evidence
    client = s3_store.client
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    refusals: list[Callable[[], object]] = [
        lambda: client.remove_object(stored.bucket, stored.key, version_id=stored.version_id),
        lambda: client._execute("DELETE", stored.bucket, stored.key,  # the bypass header minio hides
                                headers={"x-amz-bypass-governance-retention": "true"},
                                query_params={"versionId": stored.version_id}),
        lambda: client.set_object_retention(stored.bucket, stored.key, Retention(COMPLIANCE, soon),
                                            version_id=stored.version_id),
        lambda: client.set_object_retention(stored.bucket, stored.key, Retention(GOVERNANCE, soon),
                                            version_id=stored.version_id),
    ]
    for attempt in refusals:
        with pytest.raises(S3Error) as refused:
            attempt()
        assert refused.value.code == "AccessDenied"
    errors = list(client.remove_objects(stored.bucket, [DeleteObject(stored.key, stored.version_id)],
                                        bypass_governance_mode=True))
    assert [(e.code, e.version_id) for e in errors] == [("AccessDenied", stored.version_id)]
    retention = client.get_object_retention(stored.bucket, stored.key, version_id=stored.version_id)
    assert retention is not None and retention.mode == COMPLIANCE and retention.retain_until_date > soon
    assert_intact(s3_store, stored, data, tmp_path)


# --- the security material ---------------------------------------------------------------------------------


def test_security_material_is_created_once_and_kept(tmp_path: Path) -> None:
    root = tmp_path / "seaweedfs"
    first = SeaweedSecurity.load_or_create(root)
    keys = tomllib.loads(first.toml_path.read_text())
    certificates = {c: first.cert_path(c).read_bytes() for c in COMPONENTS}
    second = SeaweedSecurity.load_or_create(root)
    assert tomllib.loads(second.toml_path.read_text()) == keys
    assert {c: second.cert_path(c).read_bytes() for c in COMPONENTS} == certificates
    signing = {section: _section(keys, section)["key"] for section in JWT_SECTIONS}
    assert len(set(signing.values())) == len(JWT_SECTIONS) and all(len(str(k)) >= 32 for k in signing.values())
    assert keys["access"]["ui"] is False and keys["https"]["client"]["enabled"] is True
    for path in (first.toml_path, first.ca_path, *(first.key_path(c) for c in COMPONENTS)):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(first.tls_dir.stat().st_mode) == 0o700
    # A damaged certificate set is issued anew (new CA); the JWT keys stay.
    first.key_path("volume").write_bytes(b"not a key")
    third = SeaweedSecurity.load_or_create(root)
    assert third.ca_path.read_bytes() != b"" and third.cert_path("master").read_bytes() != certificates["master"]
    assert {section: _section(tomllib.loads(third.toml_path.read_text()), section)["key"]
            for section in JWT_SECTIONS} == signing


def _section(document: dict[str, object], dotted: str) -> dict[str, object]:
    node: object = document
    for part in dotted.split("."):
        assert isinstance(node, dict)
        node = node[part]
    assert isinstance(node, dict)
    return node


def test_a_home_from_before_gets_secured_on_its_next_start(tmp_path: Path) -> None:
    root = tmp_path / "seaweedfs"
    config = SeaweedConfig.load_or_create(root)  # what an earlier Locard left: ports and identity only
    assert not (root / "security.toml").exists() and not (root / "tls").exists()
    server = SeaweedServer(root, max_volumes=8)
    server.start()
    try:
        assert server.config == config
        assert (root / "security.toml").exists() and server.security.ca_path.exists()
        assert_certificate_required(tcp(config.ports["master"]), alpn="http/1.1",
                                    payload=b"GET /dir/assign HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, _ = plain_http(tcp(config.ports["filer"]), "GET", "/")
        assert status in (None, 400)
        client = Minio(config.s3_endpoint, access_key=config.access_key, secret_key=config.secret_key, secure=False)
        assert client.list_buckets() == []
    finally:
        server.stop()
    assert not any(path.exists() for path in server.local_grpc_sockets())


@pytest.mark.skipif(os.getuid() != 0, reason="making a file owned by another user needs root")
def test_start_refuses_a_grpc_socket_path_held_by_another_user(tmp_path: Path) -> None:
    server = SeaweedServer(tmp_path / "seaweedfs", max_volumes=8)
    planted = server.local_grpc_sockets()[0]  # where `weed server` puts the master's gRPC socket
    planted.touch()
    try:
        os.chown(planted, 65534, 65534)
        with pytest.raises(SeaweedError, match="belongs to another user"):
            server.start()
        assert server.running_pid() is None and planted.exists()
    finally:
        planted.unlink(missing_ok=True)


def test_a_recycled_pid_in_the_pid_file_is_neither_trusted_nor_signalled(tmp_path: Path) -> None:
    """A pid file naming another live program (its pid reused) must not make Locard signal that program."""
    server = SeaweedServer(tmp_path / "seaweedfs")
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    try:
        server.pid_file.write_text(str(bystander.pid))
        assert server.running_pid() is None
        server.stop()
        assert bystander.poll() is None  # still running: never signalled
        assert not server.pid_file.exists()
    finally:
        bystander.kill()
        bystander.wait()
