"""A throwaway redis-server for the Celery tests and CI (the broker): start, stop.

    python tests/redis_server.py start [--port PORT]   # prints `export ...` lines to eval
    python tests/redis_server.py stop DIR              # stops the server, removes DIR

``start`` prints ``LEADFLOW_TEST_REDIS_URL`` (the broker URL) and ``LEADFLOW_TEST_REDIS_DIR``
(the server's directory: pid file, log). The server listens on 127.0.0.1 only, keeps nothing on
disk (no RDB snapshots, no AOF) and runs daemonized with a pid file. Tests that find no
``LEADFLOW_TEST_REDIS_URL`` start one of their own with :func:`start` when ``redis-server`` is
on the PATH (Debian: ``apt-get install redis-server``). Standard library only.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RedisServer", "find_binary", "start", "stop"]

URL_ENV = "LEADFLOW_TEST_REDIS_URL"
DIR_ENV = "LEADFLOW_TEST_REDIS_DIR"
RESERVED_PORTS = frozenset({6379})  # the packaged default: a server of the machine's own


@dataclass(frozen=True)
class RedisServer:
    root: str
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pidfile(self) -> str:
        return os.path.join(self.root, "redis.pid")

    @property
    def log(self) -> str:
        return os.path.join(self.root, "redis.log")


def find_binary() -> str | None:
    """``redis-server`` on the PATH (or in /usr/bin, where Debian puts it), else None."""
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )


def _free_port() -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in RESERVED_PORTS:
            return port


def ping(port: int, timeout: float = 1.0) -> bool:
    """Whether a Redis server answers PING on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def start(port: int | None = None, timeout: float = 30.0) -> RedisServer:
    """Start a daemonized redis-server in a new temporary directory; returns once it answers
    PING. Raises RuntimeError when ``redis-server`` is missing or does not come up."""
    binary = find_binary()
    if binary is None:
        raise RuntimeError("redis-server is not installed (Debian: apt-get install redis-server)")
    root = tempfile.mkdtemp(prefix="leadflow-redis-")
    server = RedisServer(root, port or _free_port())
    command = [
        binary,
        "--port", str(server.port),
        "--bind", "127.0.0.1",
        "--dir", root,
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "yes",
        "--pidfile", server.pidfile,
        "--logfile", server.log,
    ]  # fmt: skip
    subprocess.run(command, check=True, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while not ping(server.port):
        if time.monotonic() > deadline:
            log = Path(server.log).read_text(errors="replace") if os.path.exists(server.log) else ""
            stop(root)
            raise RuntimeError(f"redis-server did not answer on port {server.port}:\n{log}")
        time.sleep(0.05)
    return server


def stop(root: str, timeout: float = 30.0) -> None:
    """Stop the server whose directory is ``root`` (SIGTERM, then SIGKILL) and remove it."""
    pidfile = os.path.join(root, "redis.pid")
    try:
        pid = int(Path(pidfile).read_text().strip())
    except (OSError, ValueError):
        pid = None
    if pid is not None:
        try:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                os.kill(pid, 0)
                time.sleep(0.05)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    begin = sub.add_parser("start")
    begin.add_argument("--port", type=int)
    end = sub.add_parser("stop")
    end.add_argument("dir")
    args = parser.parse_args(argv)
    if args.command == "start":
        server = start(args.port)
        print(f"export {URL_ENV}={shlex.quote(server.url)}")
        print(f"export {DIR_ENV}={shlex.quote(server.root)}")
        print(f"redis-server on port {server.port} in {server.root}", file=sys.stderr)
        return 0
    stop(args.dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
