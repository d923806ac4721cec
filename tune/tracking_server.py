"""A cluster's tracking store in one command: a private PostgreSQL server (the system package's
binaries, `apt install postgresql`) and `mlflow server` on it, both in the foreground until Ctrl-C.

    python -m tune.tracking_server --data ~/mlflow-pg --port 5000 --host 0.0.0.0

SQLite takes one writer at a time: fine for one machine, a queue of locked writes for hundreds of
trials on a cluster. PostgreSQL takes them all at once. The database lives under --data (created on
the first start, reused after), PostgreSQL listens on 127.0.0.1 only, and MLflow serves the runs and
stores the artifacts under --data/mlartifacts (or --artifacts, e.g. s3://bucket/path). Give the study
`--mlflow-uri http://THIS_HOST:PORT`. Run as root, PostgreSQL runs as the `postgres` user (it refuses
root).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

DB_NAME = "mlflow"


def postgres_bin() -> Path | None:
    """The folder of PostgreSQL's server binaries (initdb, pg_ctl), or None where it is not installed."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return versions[-1].parent if versions else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_db_user(args: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: there, run it as the `postgres` system user."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


def _wait(check, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            if check():
                return
        time.sleep(0.5)
    raise TimeoutError(f"{what} did not come up in {timeout:.0f} s")


@contextlib.contextmanager
def postgres(data: Path, port: int | None = None, max_connections: int = 400) -> Iterator[str]:
    """A PostgreSQL server on 127.0.0.1 with its cluster in `data` (initialised on first use) -> the
    SQLAlchemy URI of its `mlflow` database; stopped on exit."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed (no pg_ctl): `apt install postgresql`, or use SQLite on one machine")
    data = Path(data).resolve()
    port = port or free_port()
    cluster = data / "pg"
    if not (cluster / "PG_VERSION").exists():
        cluster.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(cluster, "postgres", "postgres")
            if subprocess.run(_as_db_user(["test", "-w", str(cluster)])).returncode != 0:
                raise RuntimeError(f"PostgreSQL runs as the postgres user, which cannot reach {cluster} (a parent "
                                   f"folder is private, e.g. /root or pytest's temp): choose a --data folder it can "
                                   f"traverse, e.g. /var/lib/mlflow-pg")
        subprocess.run(_as_db_user([str(bin_dir / "initdb"), "-D", str(cluster), "-U", "postgres", "--auth=trust",
                                    "-E", "UTF8"]), check=True, capture_output=True)
    options = f"-p {port} -k {cluster} -c listen_addresses=127.0.0.1 -c max_connections={max_connections}"
    subprocess.run(_as_db_user([str(bin_dir / "pg_ctl"), "-D", str(cluster), "-o", options, "-l",
                                str(cluster / "server.log"), "-w", "start"]), check=True, capture_output=True)
    try:
        _create_database(port)
        # the psycopg2 driver named: SQLAlchemy 2.1 takes a bare postgresql:// for psycopg 3
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/{DB_NAME}"
    finally:
        subprocess.run(_as_db_user([str(bin_dir / "pg_ctl"), "-D", str(cluster), "-m", "fast", "stop"]),
                       capture_output=True)


def _create_database(port: int) -> None:
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,))
        if cur.fetchone() is None:
            cur.execute(f"CREATE DATABASE {DB_NAME}")
    conn.close()


@contextlib.contextmanager
def mlflow_server(backend_uri: str, artifacts: str, port: int | None = None, host: str = "127.0.0.1",
                  workers: int = 4, log: Path | None = None) -> Iterator[str]:
    """`mlflow server` on `backend_uri` -> its http URI once /health answers; stopped on exit."""
    port = port or free_port()
    out = open(log, "w") if log else subprocess.DEVNULL
    proc = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", backend_uri,
                             "--artifacts-destination", artifacts, "--host", host, "--port", str(port),
                             "--workers", str(workers)],
                            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _alive(proc, log) and urllib.request.urlopen(f"{uri}/health", timeout=2).status == 200,
              "mlflow server", timeout=120)
        yield uri
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        if log:
            out.close()


def _alive(proc: subprocess.Popen, log: Path | None) -> bool:
    if proc.poll() is not None:
        raise RuntimeError(f"mlflow server exited with code {proc.returncode}" + (f"; see {log}" if log else ""))
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tune.tracking_server", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="folder of the database (and the artifacts, without --artifacts)")
    p.add_argument("--port", type=int, default=5000, help="MLflow's port (default %(default)s)")
    p.add_argument("--host", default="127.0.0.1", help="MLflow's interface: 0.0.0.0 for a cluster's nodes")
    p.add_argument("--workers", type=int, default=4, help="MLflow server worker processes (default %(default)s)")
    p.add_argument("--artifacts", help="artifact destination (default: DATA/mlartifacts)")
    args = p.parse_args(argv)
    data = Path(args.data).expanduser().resolve()
    artifacts = args.artifacts or (data / "mlartifacts").as_uri()
    def stop(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)        # stop both servers also when killed while they start
    try:
        with postgres(data) as db, mlflow_server(db, artifacts, args.port, args.host, args.workers) as uri:
            print(f"MLflow on PostgreSQL: {uri} (database {db}); give the study --mlflow-uri "
                  f"http://{args.host if args.host != '0.0.0.0' else socket.gethostname()}:{args.port}; Ctrl-C stops both",
                  flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    except (RuntimeError, TimeoutError, subprocess.CalledProcessError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
