"""The long-lived local stack behind `flow dev up|down|status` and `make demo`.

Servers are started detached, and their pids and addresses are kept in a state
file so a later command (another process) can use or stop them. With a node
(`flow dev up --node`) the apiserver listens on the node's address and Pods run;
`down` then also removes the Pods and everything the node took from the machine."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nicoflow.devstack import machine
from nicoflow.devstack import node as local_node
from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.devstack.postgres import Postgres
from nicoflow.devstack.processes import stop_pid, stop_pids


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
    # with a node: the images imported into it, by role (project, postgres ...)
    node: bool = False
    images: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        return {"KUBECONFIG": self.kubeconfig, "DATABASE_URL": self.database_url}


def _state_file(root: Path) -> Path:
    return root / "state.json"


def load(root: Path) -> StackState | None:
    path = _state_file(root)
    if not path.exists():
        return None
    state = StackState(**json.loads(path.read_text()))
    # a state written while `up` still starts things lacks some of them
    if not all(name in state.pids and _alive(state.pids[name]) for name in CORE_SERVICES):
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


class StackError(RuntimeError):
    """The stack cannot do what was asked; the message says what to do."""


def up(root: Path, with_node: bool = False) -> StackState:
    """Start the control plane and PostgreSQL unless they already run; with a
    node, also the node (images built and imported) on a control plane Pods reach."""
    running = load(root)
    if running:
        if with_node and not running.node:
            raise StackError(
                "the stack runs without a node: `flow dev down`, then `flow dev up --node`"
            )
        return running
    down(root)
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    cp = ControlPlane(
        root / "k8s",
        address=machine.NODE_IP if with_node else "127.0.0.1",
        run_pods=with_node,
    )
    node: local_node.Node | None = None
    images: dict[str, local_node.Image] = {}
    pids: dict[str, int] = {}
    _write_state(root, StackState("", "", "", pids, node=with_node))
    try:
        if with_node:
            images = local_node.build_images()
            node = local_node.Node(root / "node", cp, images=list(images.values()))
            node.prepare()
        cp.start()
        pids.update({name: proc.pid for name, proc in cp._procs.items()})
        _write_state(root, StackState("", "", "", pids, node=with_node))
        if node is not None:
            node.start()
            pids.update(node.pids)
        pg = Postgres(root / "pg")
        pg.start()
        assert pg._proc is not None
        pids["postgres"] = pg._proc.pid
        if "flow" not in pg.psql("SELECT datname FROM pg_database").split():
            pg.create_database("flow")
    except BaseException:
        _write_state(root, StackState("", "", "", pids, node=with_node))
        down(root)
        raise
    state = StackState(
        kubeconfig=str(cp.kubeconfig),
        apiserver=cp.server,
        database_url=pg.url("flow"),
        pids=pids,
        node=with_node,
        images={role: image.ref for role, image in images.items()},
    )
    _write_state(root, state)
    return state


def _write_state(root: Path, state: StackState) -> None:
    _state_file(root).write_text(json.dumps(asdict(state), indent=2))


def down(root: Path) -> bool:
    """Stop whatever a previous `up` started; True when something was running."""
    path = _state_file(root)
    if not path.exists():
        return False
    data = json.loads(path.read_text())
    pids: dict[str, int] = data.get("pids", {})
    if data.get("node"):
        # the Pods and the node's processes first; the network the apiserver
        # listens on goes only after the apiserver
        node_pids = {name: pids.pop(name) for name in local_node.SERVICES if name in pids}
        local_node.stop_node(root / "node", node_pids)
    for group in (("operator", "simulator"), ("kube-controller-manager", "kube-apiserver")):
        stop_pids([pids.pop(name) for name in group if name in pids])
    # etcd, PostgreSQL and anything else recorded
    stop_pids(list(pids.values()))
    if data.get("node"):
        local_node.release_machine(root / "node")
    path.unlink()
    # etcd and PostgreSQL data are throw-away, like the stack itself; so are the
    # node's containers and images (imported again by the next `up --node`)
    for sub in ("k8s/etcd", "pg", "node"):
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
