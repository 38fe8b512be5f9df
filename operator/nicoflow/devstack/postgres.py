"""A throw-away PostgreSQL server from Debian's packages, on a free loopback port.

PostgreSQL refuses to run as root, so when we are root the data directory is
handed to the `postgres` system user (created by the Debian package) and the
server runs as that user.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from nicoflow.devstack.processes import free_port, spawn, stop, wait_until

SUPERUSER = "postgres"


def pg_bin_dir() -> Path:
    """The newest server binaries under /usr/lib/postgresql (or NICO_FLOW_PG_BIN)."""
    override = os.environ.get("NICO_FLOW_PG_BIN")
    if override:
        return Path(override)
    base = Path("/usr/lib/postgresql")
    versions = sorted(
        (p for p in base.glob("*/bin") if (p / "postgres").exists()),
        key=lambda p: int(re.sub(r"\D", "", p.parent.name) or 0),
    )
    if not versions:
        raise FileNotFoundError(
            "PostgreSQL server not installed: run `apt-get install postgresql` "
            "(hack/setup.sh does it) or set NICO_FLOW_PG_BIN"
        )
    return versions[-1]


@dataclass
class Postgres:
    workdir: Path
    port: int = 0
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def log(self) -> Path:
        return self.workdir / "postgres.log"

    @property
    def admin_url(self) -> str:
        return self.url("postgres")

    def url(self, dbname: str, driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run_as(self) -> str | None:
        return SUPERUSER if os.geteuid() == 0 else None

    def start(self) -> Self:
        bins = pg_bin_dir()
        user = self._run_as()
        self.workdir.mkdir(parents=True, exist_ok=True)
        if user:
            uid, gid = pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid
            os.chown(self.workdir, uid, gid)
        if not (self.data_dir / "PG_VERSION").exists():
            result = subprocess.run(
                [
                    str(bins / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    SUPERUSER,
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ],
                capture_output=True,
                text=True,
                user=user,
            )
            if result.returncode != 0:
                raise RuntimeError(f"initdb failed in {self.data_dir}: {result.stderr.strip()}")
        self.port = self.port or free_port()
        argv = [
            str(bins / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={self.workdir}",
            # a test database: durability is not wanted, speed is
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=300",
        ]
        if user:
            self.log.touch()
            shutil.chown(self.log, user)
        self._proc = spawn(argv, self.log, user=user)
        wait_until(self._ready, timeout=60, what="postgres", proc=self._proc, log=self.log)
        return self

    def _ready(self) -> bool:
        result = subprocess.run(
            [str(pg_bin_dir() / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"],
            capture_output=True,
        )
        return result.returncode == 0

    def stop(self) -> None:
        stop(self._proc)
        self._proc = None

    def restart(self) -> None:
        """Stop and start on the same port and data (reliability tests)."""
        self.stop()
        self.start()

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        result = subprocess.run(
            [
                str(pg_bin_dir() / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                dbname,
                "-v",
                "ON_ERROR_STOP=1",
                "-Atc",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        return result.stdout

    def create_database(self, name: str) -> str:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
            raise ValueError(f"invalid database name {name!r}")
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
