"""One local node per machine: a second one waits while the first runs, and
takes over from one whose processes died after cleaning up after it; another
node's machine-wide state is never undone."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from nicoflow.devstack import machine


def _refuse(workdir: Path) -> None:
    raise AssertionError(f"cleaned up a running node {workdir}")


def test_second_node_waits_then_takes_over_a_dead_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(machine, "CLAIM_DIR", tmp_path / "claim")
    first, second = tmp_path / "first", tmp_path / "second"
    # a process of the first node: its command line names the node's directory
    runner = subprocess.Popen(["bash", "-c", "sleep 60; true", str(first / "containerd.toml")])
    try:
        machine.claim(first, timeout=1, clean_up=_refuse)
        with pytest.raises(TimeoutError, match="another local node"):
            machine.claim(second, timeout=0.2, clean_up=_refuse, poll=0.1)
        assert machine.held_by_another(second)
        assert not machine.held_by_another(first)
    finally:
        runner.kill()
        runner.wait()
    cleaned: list[Path] = []
    machine.claim(second, timeout=1, clean_up=cleaned.append, poll=0.1)
    assert cleaned == [first]
    assert machine.held_by_another(first)
    machine.release_claim(first)  # not the holder: no effect
    assert machine.held_by_another(first)
    machine.release_claim(second)
    assert not (tmp_path / "claim" / "owner").exists()
