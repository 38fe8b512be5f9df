"""Our own processes — `flow simulator`, `flow operator`, `flow serve` — run as
real subprocesses, the way a user runs them, for tests, the demo and benchmarks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from nicoflow.devstack.processes import stop


def flow_argv(*args: str) -> list[str]:
    """`flow …` with the interpreter running us, so a venv needs no activation."""
    return [sys.executable, "-m", "nicoflow.cli.main", *args]


@dataclass
class Service:
    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    ready_info: dict[str, Any] = field(default_factory=dict)

    def start(self, *, ready_json: bool = False, timeout: float = 60.0) -> Self:
        """Start; with `ready_json`, wait for the JSON line {"event": "ready", ...}
        the service prints once it listens (its ports and addresses). Output goes
        to the log file only, so a detached service never blocks on a pipe."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        offset = self.log.stat().st_size if self.log.exists() else 0
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        if ready_json:
            self.ready_info = self._read_ready(offset, timeout)
        return self

    def _read_ready(self, offset: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.log.open("rb") as f:
                f.seek(offset)
                for line in f.read().splitlines():
                    if line.startswith(b"{"):
                        try:
                            info: dict[str, Any] = json.loads(line)
                        except ValueError:
                            continue
                        # JSON log lines share the file; the ready line says so
                        if info.get("event") == "ready":
                            return info
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.1)
        tail = self.log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{self.name} did not report ready within {timeout:.0f}s\n{tail}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up (crash tests)."""
        if self.alive():
            assert self.proc is not None
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        stop(self.proc)
