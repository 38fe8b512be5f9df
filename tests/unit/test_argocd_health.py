"""The Argo CD health checks shipped with the chart, run in Lua 5.1 as Argo CD
runs them: the object as the global `obj`, only the base and table libraries
(Argo CD opens no string, math or io library unless useOpenLibs is set)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import lupa.lua51 as lua51
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ARGOCD_DIR = ROOT / "charts" / "nico-flow" / "argocd"
GROUP = "flow.nico.io"
KINDS = ("Task", "TaskSpec", "Rack", "TaskSchedule", "OperationRule")
# libraries Argo CD leaves closed; a script that uses one fails in Argo CD
CLOSED_LIBS = ("string", "math", "io", "debug", "coroutine", "os", "python")

# What each kind must be able to report. Racks and rules never suspend.
EXPECTED_STATES = {
    "Task": {"Progressing", "Healthy", "Degraded", "Suspended"},
    "TaskSpec": {"Progressing", "Healthy", "Degraded", "Suspended"},
    "TaskSchedule": {"Progressing", "Healthy", "Degraded", "Suspended"},
    "Rack": {"Progressing", "Healthy", "Degraded"},
    "OperationRule": {"Progressing", "Healthy", "Degraded"},
}


def run_health(script: str, obj: dict[str, Any]) -> dict[str, str]:
    lua = lua51.LuaRuntime(register_eval=False, register_builtins=False)
    g = lua.globals()
    for lib in CLOSED_LIBS:
        g[lib] = None
    g.obj = lua.table_from(obj, recursive=True)
    result = lua.execute(script)
    return {"status": result["status"], "message": result["message"]}


def cases(kind: str) -> list[tuple[Path, dict[str, str]]]:
    base = ARGOCD_DIR / GROUP / kind
    spec = yaml.safe_load((base / "health_test.yaml").read_text())
    return [(base / t["inputPath"], t["healthStatus"]) for t in spec["tests"]]


ALL_CASES = [
    pytest.param(kind, path, expected, id=f"{kind}-{path.stem}")
    for kind in KINDS
    for path, expected in cases(kind)
]


@pytest.mark.parametrize(("kind", "path", "expected"), ALL_CASES)
def test_health_of_sample(kind: str, path: Path, expected: dict[str, str]) -> None:
    script = (ARGOCD_DIR / GROUP / kind / "health.lua").read_text()
    obj = yaml.safe_load(path.read_text())
    assert obj["kind"] == kind
    assert run_health(script, obj) == expected


@pytest.mark.parametrize("kind", KINDS)
def test_samples_cover_every_state(kind: str) -> None:
    seen = {expected["status"] for _, expected in cases(kind)}
    assert seen == EXPECTED_STATES[kind]


@pytest.mark.parametrize("kind", KINDS)
def test_a_new_object_is_progressing_not_healthy(kind: str) -> None:
    # the reason to ship health checks: without one Argo CD calls a fresh CR Healthy
    script = (ARGOCD_DIR / GROUP / kind / "health.lua").read_text()
    bare = {"apiVersion": f"{GROUP}/v1alpha1", "kind": kind, "metadata": {"name": "x"}}
    assert run_health(script, bare)["status"] == "Progressing"
    with_empty_status = {**bare, "status": {}}
    assert run_health(script, with_empty_status)["status"] == "Progressing"


@pytest.mark.parametrize("kind", ["TaskSpec", "Rack", "TaskSchedule", "OperationRule"])
def test_stale_status_is_progressing_even_if_healthy_before(kind: str) -> None:
    script = (ARGOCD_DIR / GROUP / kind / "health.lua").read_text()
    healthy = next(
        yaml.safe_load(p.read_text()) for p, e in cases(kind) if e["status"] == "Healthy"
    )
    healthy["metadata"]["generation"] = healthy["status"]["observedGeneration"] + 1
    result = run_health(script, healthy)
    if kind == "TaskSpec":
        # Complete is final: a later spec edit cannot make it run again
        assert result["status"] == "Healthy"
    else:
        assert result == {
            "status": "Progressing",
            "message": "waiting for the operator to observe generation "
            f"{healthy['metadata']['generation']}",
        }


def test_condition_order_does_not_matter() -> None:
    # A leak must win however the conditions are ordered (the early-return bug
    # of first-match scripts).
    script = (ARGOCD_DIR / GROUP / "Rack" / "health.lua").read_text()
    rack = yaml.safe_load((ARGOCD_DIR / GROUP / "Rack" / "testdata" / "leak.yaml").read_text())
    rack["status"]["conditions"].reverse()
    assert run_health(script, rack)["status"] == "Degraded"


def test_closed_libraries_are_really_closed() -> None:
    # guards the emulation itself: a script calling string.format must fail here
    with pytest.raises(lua51.LuaError):
        run_health('return {status = string.format("%s", "x"), message = ""}', {})


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("gen_argocd_cm", ROOT / "hack/gen_argocd_cm.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_argocd_cm_patch_is_current() -> None:
    gen = _generator()
    patch = ARGOCD_DIR / "argocd-cm-patch.yaml"
    assert patch.read_text() == gen.render(), "run hack/gen_argocd_cm.py"
    data = yaml.safe_load(patch.read_text())["data"]
    assert sorted(data) == sorted(f"resource.customizations.health.{GROUP}_{k}" for k in KINDS)
