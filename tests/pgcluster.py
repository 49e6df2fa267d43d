"""A throwaway PostgreSQL cluster for the test suite and CI: start, restart, stop.

Run as root (as CI does), the cluster belongs to the ``postgres`` user: its directory is made
for that user and ``initdb`` / ``pg_ctl`` run through ``su postgres`` (the venv's Python cannot
run as ``postgres``, and peer authentication from root fails), with trust authentication over
TCP on 127.0.0.1 only. Run as another user, the cluster belongs to that user.

    python tests/pgcluster.py start [--port PORT]   # prints `export ...` lines to eval
    python tests/pgcluster.py restart DIR [--mode immediate|fast]
    python tests/pgcluster.py stop DIR              # stops the server, removes DIR

``start`` prints ``LEADFLOW_TEST_POSTGRES_URL`` (what the PostgreSQL tests connect to) and
``LEADFLOW_TEST_POSTGRES_CLUSTER`` (the directory; its ``cluster.json`` tells the chaos test the
binaries, data directory and port, through :func:`load`). Everything else it says goes to stderr.

The server runs with ``fsync=off``: the tests crash processes (``pg_ctl -m immediate``), never
the machine, and a write the server acknowledged survives a process crash without fsync
(commits stay synchronous). Standard library only.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["Cluster", "create", "destroy", "find_bindir", "is_running", "load", "restart"]

STATE_FILE = "cluster.json"
OWNER = "postgres"
RESERVED_PORTS = frozenset({5432, 55433})  # the packaged default; a colleague's local server
URL_ENV = "LEADFLOW_TEST_POSTGRES_URL"
CLUSTER_ENV = "LEADFLOW_TEST_POSTGRES_CLUSTER"


@dataclass(frozen=True)
class Cluster:
    """One throwaway cluster: ``root`` holds ``data/``, the socket, ``server.log`` and the state
    file; ``bindir`` has ``initdb`` and ``pg_ctl``."""

    root: str
    port: int
    bindir: str

    @property
    def data(self) -> str:
        return os.path.join(self.root, "data")

    @property
    def log(self) -> str:
        return os.path.join(self.root, "server.log")

    @property
    def url(self) -> str:
        """A SQLAlchemy URL (psycopg 3) for the ``postgres`` database, as user ``postgres``."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def options(self) -> str:
        return (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off -c max_connections=200"
        )


def find_bindir() -> str | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with ``pg_ctl`` (or ``PG_BINDIR``)."""
    explicit = os.environ.get("PG_BINDIR")
    if explicit and os.path.exists(os.path.join(explicit, "pg_ctl")):
        return explicit
    found = glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")

    def version(path: str) -> float:
        try:
            return float(Path(path).parent.parent.name)
        except ValueError:
            return 0.0

    return str(Path(max(found, key=version)).parent) if found else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (never a reserved one)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in RESERVED_PORTS:
            return port


def _as_owner(argv: list[str]) -> list[str]:
    return ["su", OWNER, "-c", shlex.join(argv)] if os.geteuid() == 0 else argv


def _run(argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL binary as the cluster's owner; its output goes to stderr (stdout is
    kept for the ``export`` lines)."""
    done = subprocess.run(
        _as_owner(argv), stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )
    sys.stderr.write(done.stdout + done.stderr)
    if check and done.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed with exit code {done.returncode}")
    return done


def _pg_ctl(cluster: Cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run([os.path.join(cluster.bindir, "pg_ctl"), "-D", cluster.data, *args], check=check)


def create(*, port: int | None = None, bindir: str | None = None) -> Cluster:
    """Make a new cluster in a fresh temporary directory and start it. On failure nothing is
    left behind. Raises RuntimeError when no PostgreSQL binaries are installed."""
    bindir = bindir or find_bindir()
    if bindir is None:
        raise RuntimeError("no PostgreSQL binaries (apt-get install -y postgresql)")
    root = tempfile.mkdtemp(prefix="leadflow-pg-")
    os.chmod(root, 0o700)
    if os.geteuid() == 0:
        owner = pwd.getpwnam(OWNER)
        os.chown(root, owner.pw_uid, owner.pw_gid)
    cluster = Cluster(root=root, port=port or free_port(), bindir=bindir)
    try:
        _run(
            [
                os.path.join(bindir, "initdb"),
                "-D",
                cluster.data,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ]
        )
        Path(root, STATE_FILE).write_text(json.dumps(asdict(cluster)), encoding="utf-8")
        start(cluster)
    except BaseException:
        destroy(cluster)
        raise
    return cluster


def load(root: str) -> Cluster:
    """The cluster whose directory is ``root`` (read from its state file)."""
    state = json.loads(Path(root, STATE_FILE).read_text(encoding="utf-8"))
    return Cluster(root=state["root"], port=int(state["port"]), bindir=state["bindir"])


def is_running(cluster: Cluster) -> bool:
    return _pg_ctl(cluster, "status", check=False).returncode == 0


def start(cluster: Cluster) -> None:
    """Start the server and wait until it accepts connections (crash recovery included)."""
    _pg_ctl(cluster, "-l", cluster.log, "-o", cluster.options(), "-w", "-t", "120", "start")


def stop(cluster: Cluster, mode: str = "fast") -> None:
    """Stop the server: ``fast`` (clean) or ``immediate`` (a crash: recovery at next start)."""
    _pg_ctl(cluster, "-m", mode, "-w", "-t", "120", "stop")


def restart(cluster: Cluster, *, mode: str = "immediate", down: float = 0.0) -> tuple[float, float]:
    """Stop the server (``immediate`` by default: every connection dies at once), stay down for
    ``down`` seconds, start it again. Returns the monotonic times when it went down and when it
    accepted connections again."""
    stop(cluster, mode)
    went_down = time.monotonic()
    if down > 0:
        time.sleep(down)
    start(cluster)
    return went_down, time.monotonic()


def destroy(cluster: Cluster) -> None:
    """Stop the server if it runs (fast, then immediate) and remove its directory."""
    running = os.path.exists(os.path.join(cluster.data, "postmaster.pid"))
    if running and _pg_ctl(cluster, "-m", "fast", "-w", "-t", "60", "stop", check=False).returncode:
        _pg_ctl(cluster, "-m", "immediate", "-w", "stop", check=False)
    shutil.rmtree(cluster.root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    start_cmd = sub.add_parser("start", help="create and start a cluster; print export lines")
    start_cmd.add_argument("--port", type=int, default=None)
    restart_cmd = sub.add_parser("restart", help="restart a cluster")
    restart_cmd.add_argument("dir")
    restart_cmd.add_argument("--mode", choices=("immediate", "fast"), default="immediate")
    stop_cmd = sub.add_parser("stop", help="stop a cluster and remove its directory")
    stop_cmd.add_argument("dir")
    args = parser.parse_args(argv)
    if args.command == "start":
        cluster = create(port=args.port)
        print(f"export {URL_ENV}={shlex.quote(cluster.url)}")
        print(f"export {CLUSTER_ENV}={shlex.quote(cluster.root)}")
    elif args.command == "restart":
        restart(load(args.dir), mode=args.mode)
    else:
        if not os.path.exists(os.path.join(args.dir, STATE_FILE)):
            print(f"pgcluster: no cluster in {args.dir}; nothing to stop", file=sys.stderr)
            return 0
        destroy(load(args.dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
