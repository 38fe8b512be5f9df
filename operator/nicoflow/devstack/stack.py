"""The long-lived local stack behind `flow dev up|down|status` and `make demo`.

Servers are started detached, and their pids and addresses are kept in a state
file so a later command (another process) can use or stop them."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.devstack.postgres import Postgres
from nicoflow.devstack.processes import stop_pid


def default_dir() -> Path:
    """Outside the repository, short (PostgreSQL's socket path has a length
    limit) and reachable by the postgres user when we run as root, which a
    home directory under /root is not."""
    base = os.environ.get("NICO_FLOW_DEV_DIR")
    if base:
        return Path(base)
    return Path(tempfile.gettempdir()) / f"nico-flow-dev-{os.getuid()}"


@dataclass
class StackState:
    kubeconfig: str
    apiserver: str
    database_url: str
    pids: dict[str, int]

    def env(self) -> dict[str, str]:
        return {"KUBECONFIG": self.kubeconfig, "DATABASE_URL": self.database_url}


def _state_file(root: Path) -> Path:
    return root / "state.json"


def load(root: Path) -> StackState | None:
    path = _state_file(root)
    if not path.exists():
        return None
    state = StackState(**json.loads(path.read_text()))
    if not all(_alive(pid) for name, pid in state.pids.items() if name in CORE_SERVICES):
        return None
    return state


CORE_SERVICES = ("etcd", "kube-apiserver", "kube-controller-manager", "postgres")


def record_services(root: Path, pids: dict[str, int]) -> None:
    """Add processes started for the demo, so `flow dev down` stops them too."""
    path = _state_file(root)
    data = json.loads(path.read_text())
    data["pids"].update(pids)
    path.write_text(json.dumps(data, indent=2))


def stop_services(root: Path, names: tuple[str, ...]) -> None:
    path = _state_file(root)
    if not path.exists():
        return
    data = json.loads(path.read_text())
    for name in names:
        pid = data["pids"].pop(name, None)
        if pid is not None and _alive(pid):
            stop_pid(pid)
    path.write_text(json.dumps(data, indent=2))


def up(root: Path) -> StackState:
    """Start the control plane and PostgreSQL unless they already run."""
    running = load(root)
    if running:
        return running
    down(root)
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    cp = ControlPlane(root / "k8s").start()
    pg = Postgres(root / "pg")
    try:
        pg.start()
        if "flow" not in pg.psql("SELECT datname FROM pg_database").split():
            pg.create_database("flow")
    except BaseException:
        cp.stop()
        raise
    pids = {name: proc.pid for name, proc in cp._procs.items()}
    assert pg._proc is not None
    pids["postgres"] = pg._proc.pid
    state = StackState(
        kubeconfig=str(cp.kubeconfig),
        apiserver=cp.server,
        database_url=pg.url("flow"),
        pids=pids,
    )
    _state_file(root).write_text(json.dumps(asdict(state), indent=2))
    return state


def down(root: Path) -> bool:
    """Stop whatever a previous `up` started; True when something was running."""
    path = _state_file(root)
    if not path.exists():
        return False
    pids: dict[str, int] = json.loads(path.read_text()).get("pids", {})
    order = [
        "operator",
        "simulator",
        "kube-controller-manager",
        "kube-apiserver",
        "etcd",
        "postgres",
    ]
    for name in sorted(pids, key=lambda n: order.index(n) if n in order else -1):
        stop_pid(pids[name])
    path.unlink()
    # etcd and PostgreSQL data are throw-away, like the stack itself
    for sub in ("k8s/etcd", "pg"):
        _rmtree(root / sub)
    return True


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
