"""The chart installed for real, on the local node of `flow dev up --node`: Pods
run from the images built here, under the restricted Pod Security Standard.

The module walks docs/install.md section 4 — each `<!-- live: NAME -->` block is
run with bash, in order — and checks more between the blocks. One install is
shared, so the tests run in the order written: install, a first TaskSpec, a
client Pod, the operator Pod deleted mid-run, upgrade and rollback, uninstall,
and `flow dev down` giving the machine back."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_support import REPO_ROOT

from nicoflow.devstack import machine, stack
from nicoflow.devstack.controlplane import kubectl_binary
from nicoflow.devstack.flowstack import SimulatorControl
from nicoflow.devstack.node_config import NODE_NAME
from nicoflow.inventory import migrate

# one node per machine: the test may first wait for another engineer's to stop
pytestmark = pytest.mark.timeout(1800)

DOC = REPO_ROOT / "docs" / "install.md"
VALUES = REPO_ROOT / "docs" / "examples" / "local-node" / "values.yaml"
BLOCK = re.compile(r"<!-- live: ([a-z-]+) -->\n```sh\n(.*?)```", re.DOTALL)
NS = "nico-flow"
RELEASE = "nico-flow"
# what the chart names its objects for release nico-flow
OPERATOR = "nico-flow-operator"
API = "nico-flow-api"
POSTGRES = "nico-flow-postgres"
MIGRATE_JOB = "nico-flow-db-migrate"


def live_blocks() -> dict[str, str]:
    return dict(BLOCK.findall(DOC.read_text()))


@dataclass
class Live:
    """The running stack, a shell for the doc's blocks, kubectl and helm."""

    root: Path
    cwd: Path
    env: dict[str, str]
    outputs: dict[str, str] = field(default_factory=dict)
    sysctls_before: dict[str, str] = field(default_factory=dict)
    _simulator: SimulatorControl | None = None

    def block(self, name: str, timeout: float = 600) -> str:
        script = live_blocks()[name]
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert result.returncode == 0, (
            f"{script}\n--- stdout:\n{result.stdout}\n--- stderr:\n{result.stderr}"
        )
        self.outputs[name] = result.stdout
        return result.stdout

    def run(
        self, *argv: str, check: bool = True, timeout: float = 300, input: str | None = None
    ) -> str:
        result = subprocess.run(
            list(argv), env=self.env, capture_output=True, text=True, timeout=timeout, input=input
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def kubectl(self, *args: str, check: bool = True, timeout: float = 300) -> str:
        return self.run(kubectl_binary(), *args, check=check, timeout=timeout)

    def apply(self, manifest: str) -> str:
        return self.run(kubectl_binary(), "apply", "-f", "-", input=manifest)

    def helm(self, *args: str, timeout: float = 600) -> str:
        return self.run(self.env["HELM"], *args, timeout=timeout)

    def get(self, kind: str, name: str = "", *args: str) -> Any:
        out = self.kubectl("get", kind, *([name] if name else []), "-n", NS, *args, "-o", "json")
        return json.loads(out)

    def pods(self, component: str) -> list[dict[str, Any]]:
        selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component={component}"
        items: list[dict[str, Any]] = self.get("pods", "", "-l", selector)["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    def simulator(self) -> SimulatorControl:
        """The simulator Pod's control API, through its Service from the host."""
        if self._simulator is None:
            ip = self.get("service", "nico-core-sim")["spec"]["clusterIP"]
            self._simulator = SimulatorControl(f"http://{ip}:50053")
        return self._simulator


def wait_for(check: Callable[[], Any], what: str, timeout: float = 300, every: float = 1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.0f}s")


def ready(pod: dict[str, Any]) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def taskspec(name: str, operation: str, targets: dict[str, Any]) -> str:
    body = {
        "apiVersion": "flow.nico.io/v1alpha1",
        "kind": "TaskSpec",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"operation": operation, "targets": targets},
    }
    return json.dumps(body)


def kube_chains() -> list[str]:
    dump = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    return [line for line in dump.splitlines() if "KUBE-" in line or "CNI-" in line]


def sysctls() -> dict[str, str]:
    return {
        name: (Path("/proc/sys") / name).read_text().strip()
        for name in machine.SYSCTLS
        if (Path("/proc/sys") / name).exists()
    }


@pytest.fixture(scope="module")
def live(helm_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """`flow dev up --node` (the doc's first block) in a stack directory of its
    own; `flow dev down` afterwards, whatever happened."""
    # short: PostgreSQL's socket path has a length limit
    root = Path(tempfile.mkdtemp(prefix="nf-live-"))
    os.chmod(root, 0o755)
    cwd = tmp_path_factory.mktemp("live-docs")
    for link in ("charts", "docs"):
        (cwd / link).symlink_to(REPO_ROOT / link)
    home = tmp_path_factory.mktemp("live-helm")
    env = dict(os.environ)
    env.update(
        NICO_FLOW_DEV_DIR=str(root),
        PATH=os.pathsep.join(
            [str(helm_binary.parent), str(Path(sys.executable).parent), env["PATH"]]
        ),
        HELM=str(helm_binary),
        HELM_CACHE_HOME=str(home / "cache"),
        HELM_CONFIG_HOME=str(home / "config"),
        HELM_DATA_HOME=str(home / "data"),
        COLUMNS="200",
    )
    env.pop("KUBECONFIG", None)
    live = Live(root, cwd, env, sysctls_before=sysctls())
    try:
        live.block("up", timeout=1800)
        state = stack.load(root)
        assert state is not None
        assert state.node
        env["KUBECONFIG"] = state.kubeconfig
        yield live
    finally:
        if live._simulator is not None:
            live._simulator.close()
        subprocess.run(
            [sys.executable, "-m", "nicoflow.cli.main", "dev", "down"],
            env=env,
            capture_output=True,
            timeout=300,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def installed(live: Live) -> Live:
    """The doc's install block: simulator, Racks, `helm install --wait`, `helm test`."""
    live.block("install", timeout=900)
    return live


def test_up_registers_a_ready_node(live: Live) -> None:
    assert NODE_NAME in live.outputs["up"]
    node = json.loads(live.kubectl("get", "node", NODE_NAME, "-o", "json"))
    info = node["status"]["nodeInfo"]
    assert info["kubeletVersion"] == "v1.37.2"
    assert info["containerRuntimeVersion"].startswith("containerd://")
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == machine.NODE_IP
    # the images of hack/build-images.sh are on the node, nothing else was pulled
    images = {n for i in node["status"].get("images", []) for n in i.get("names", [])}
    assert "docker.io/library/nico-flow:0.1.0" in images
    assert "localhost/nico-flow/postgres:15" in images


def test_install_runs_the_migration_and_the_pods_become_ready(installed: Live) -> None:
    live = installed
    assert "STATUS: deployed" in live.outputs["install"]
    # `helm test`: the API's gRPC health service, through its Service
    assert "Phase:          Succeeded" in live.outputs["install"]
    # the post-install hook ran `flow db migrate` to the head revision, then was deleted
    events = live.get("events", "", f"--field-selector=involvedObject.name={MIGRATE_JOB}")
    assert any(e["reason"] == "Completed" for e in events["items"]), events["items"]
    version = live.kubectl(
        "exec", "-n", NS, f"{POSTGRES}-0", "--",
        "psql", "-U", "flow", "-d", "flow", "-Atc", "SELECT version_num FROM alembic_version",
    )  # fmt: skip
    assert version.split() == migrate.heads()
    # the bundled database got its volume from the node's StorageClass
    pvc = live.get("pvc", f"data-{POSTGRES}-0")
    assert pvc["status"]["phase"] == "Bound"
    for component in ("operator", "api", "postgres"):
        pods = live.pods(component)
        assert len(pods) == 1, component
        assert ready(pods[0]), (component, pods[0]["status"])
    # the restricted securityContext holds at run time: uid 10001, read-only root
    for deploy in (OPERATOR, API):
        uid = live.kubectl("exec", "-n", NS, f"deploy/{deploy}", "--", "id", "-u")
        assert uid.strip() == "10001"
        touch = subprocess.run(
            [kubectl_binary(), "exec", "-n", NS, f"deploy/{deploy}", "--", "touch", "/written"],
            env=live.env,
            capture_output=True,
            text=True,
        )
        assert touch.returncode != 0
        assert "Read-only file system" in touch.stderr
    # the namespace enforces it, so the API server admitted nothing less
    ns = json.loads(live.kubectl("get", "namespace", NS, "-o", "json"))
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_a_taskspec_applied_with_kubectl_completes(installed: Live) -> None:
    live = installed
    control = live.simulator()
    control.clear_ledger()
    out = live.block("first-run")
    assert "condition met" in out
    tasks = live.get("tasks", "", "-l", "flow.nico.io/taskspec=power-cycle-a01-a02")["items"]
    assert sorted(t["spec"]["rack"] for t in tasks) == ["rack-a01", "rack-a02"]
    assert all(t["status"]["phase"] == "Succeeded" for t in tasks)
    # the operator Pod drove the simulator Pod: power commands landed, once each
    assert control.counts().get("AdminPowerControl", 0) > 0
    assert control.duplicates() == []


def test_a_client_pod_reaches_the_api_by_its_service_name(installed: Live) -> None:
    live = installed
    out = live.block("client")
    listed = json.loads(out[out.index("{") :])
    operations = [t["operation"] for t in listed["tasks"]]
    assert len(operations) >= 2
    assert all(op.startswith("Restart") for op in operations)


def test_operator_pod_deleted_mid_restart_hands_over_the_lease(installed: Live) -> None:
    live = installed
    control = live.simulator()
    control.clear_ledger()
    racks = json.loads(live.kubectl("get", "racks", "-o", "json"))["items"]
    assert len(racks) == 10
    everything = {"rackSelector": {"matchLabels": {"flow.nico.io/simulated": "true"}}}
    live.apply(taskspec("restart-all", "restart", everything))
    (old,) = live.pods("operator")
    old_name = old["metadata"]["name"]

    def midway() -> bool:
        tasks = live.get("tasks", "", "-l", "flow.nico.io/taskspec=restart-all")["items"]
        started = [t for t in tasks if (t.get("status") or {}).get("phase") == "Running"]
        return len(tasks) == 10 and len(started) > 0 and len(control.ledger()) > 20

    wait_for(midway, "the restart under way on every rack", timeout=180, every=0.5)
    sent_before = len(control.ledger())
    live.kubectl("delete", "pod", "-n", NS, old_name, "--wait=false")

    def new_leader() -> str | None:
        lease = live.get("lease", OPERATOR)
        holder: str | None = lease["spec"].get("holderIdentity")
        pods = [p for p in live.pods("operator") if p["metadata"]["name"] != old_name]
        if holder and pods and holder == pods[0]["metadata"]["name"] and ready(pods[0]):
            return holder
        return None

    holder = wait_for(new_leader, "a new operator Pod holding the Lease", timeout=300)
    assert holder != old_name

    def complete() -> dict[str, Any] | None:
        spec: dict[str, Any] = live.get("taskspec", "restart-all")
        return spec if (spec.get("status") or {}).get("phase") in ("Complete", "Failed") else None

    spec = wait_for(complete, "the restart to finish", timeout=900, every=2)
    assert spec["status"]["phase"] == "Complete", spec["status"]
    assert spec["status"]["succeeded"] == 10
    # the run was cut in two, and no component got a command twice
    assert len(control.ledger()) > sent_before
    assert control.duplicates() == []


def test_upgrade_with_network_policies_then_rollback(installed: Live, tmp_path: Path) -> None:
    live = installed
    values = yaml.safe_load(VALUES.read_text())
    values["api"]["replicas"] = 2
    values["networkPolicy"] = {"enabled": True}
    changed = tmp_path / "values-changed.yaml"
    changed.write_text(yaml.safe_dump(values))
    live.helm("upgrade", RELEASE, str(REPO_ROOT / "charts" / "nico-flow"), "-n", NS,
              "-f", str(changed), "--wait", "--timeout=5m")  # fmt: skip
    history = json.loads(live.helm("history", RELEASE, "-n", NS, "-o", "json"))
    assert [h["revision"] for h in history] == [1, 2]
    assert history[-1]["status"] == "deployed"
    # the pre-upgrade hook migrated again (a no-op at head): two completions
    events = live.get("events", "", f"--field-selector=involvedObject.name={MIGRATE_JOB}")
    assert sum(e["reason"] == "Completed" for e in events["items"]) == 2
    api_pods = wait_for(
        lambda: [p for p in live.pods("api") if ready(p)] if len(live.pods("api")) == 2 else None,
        "two ready API Pods",
    )
    assert len(api_pods) == 2
    check_network_policies(live)
    # the operator's and the API's real traffic still flows: a run and an API call
    live.apply(taskspec("power-on-a03", "power_on", {"racks": ["rack-a03"]}))
    live.kubectl("wait", "-n", NS, "taskspec/power-on-a03",
                 "--for=jsonpath={.status.phase}=Complete", "--timeout=5m")  # fmt: skip
    live.kubectl("delete", "pod", "-n", NS, "flow-client", "--wait=true")
    live.block("client")

    live.helm("rollback", RELEASE, "1", "-n", NS, "--wait", "--timeout=5m")
    history = json.loads(live.helm("history", RELEASE, "-n", NS, "-o", "json"))
    assert history[-1]["revision"] == 3
    assert history[-1]["description"] == "Rollback to 1"
    assert live.get("networkpolicies")["items"] == []
    deploy = live.get("deployment", API)
    assert deploy["spec"]["replicas"] == 1
    wait_for(lambda: len(live.pods("api")) == 1 and ready(live.pods("api")[0]), "one API Pod")


def check_network_policies(live: Live) -> None:
    """Every policy selects the release's real Pods and names ports they have;
    the database admits the operator, the API and the migration Job. (The CNI
    bridge here does not enforce policies: this is what can be checked.)"""
    policies = {p["metadata"]["name"]: p for p in live.get("networkpolicies")["items"]}
    assert set(policies) == {OPERATOR, API, POSTGRES}
    migrate_labels = {
        "app.kubernetes.io/name": "nico-flow",
        "app.kubernetes.io/instance": RELEASE,
        "app.kubernetes.io/component": "db-migrate",
    }
    for name, policy in policies.items():
        selector = policy["spec"]["podSelector"]["matchLabels"]
        component = selector["app.kubernetes.io/component"]
        pods = live.pods(component)
        assert pods, f"{name} selects no Pod"
        for pod in pods:
            labels = pod["metadata"]["labels"]
            assert selector.items() <= labels.items(), name
            ports = {p.get("name") for c in pod["spec"]["containers"] for p in c.get("ports", [])}
            for rule in policy["spec"]["ingress"]:
                for port in rule.get("ports", []):
                    assert port["port"] in ports, f"{name}: no port {port['port']} on {component}"
    sources = [
        peer["podSelector"]["matchLabels"]
        for peer in policies[POSTGRES]["spec"]["ingress"][0]["from"]
    ]
    for component in ("operator", "api"):
        labels = live.pods(component)[0]["metadata"]["labels"]
        assert any(src.items() <= labels.items() for src in sources), component
    assert migrate_labels in sources


def test_uninstall_keeps_the_crds_and_the_objects(installed: Live) -> None:
    live = installed
    out = live.block("uninstall")
    for crd in ("racks.flow.nico.io", "taskspecs.flow.nico.io", "tasks.flow.nico.io"):
        assert crd in out
    assert "rack-a10" in out
    assert len(live.get("taskspecs")["items"]) == 3
    assert len(live.get("tasks")["items"]) == 13
    assert live.get("deployments", "", "-l", f"app.kubernetes.io/instance={RELEASE}")["items"] == []
    # the bundled database's password outlives the release with its volume
    assert live.get("secret", POSTGRES)["metadata"]["name"] == POSTGRES


def test_dev_down_gives_the_machine_back(live: Live) -> None:
    live.block("down", timeout=300)
    assert stack.load(live.root) is None
    marker = str(live.root).encode()
    running = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker in (proc / "cmdline").read_bytes():
                    running.append(proc.name)
            except OSError:
                continue
    assert running == []
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(live.root) not in mounts
    assert (
        subprocess.run(["ip", "link", "show", machine.BRIDGE], capture_output=True).returncode != 0
    )
    assert kube_chains() == []
    assert not (Path("/sys/fs/cgroup/memory") / machine.CGROUP_ROOT).exists()
    assert sysctls() == live.sysctls_before
