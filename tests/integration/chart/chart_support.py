"""Helpers of the Helm chart tests: helm as a subprocess, the value sets, and
lookups in rendered manifests."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
CHART = REPO_ROOT / "charts" / "nico-flow"
VALUE_SETS = sorted((CHART / "ci").glob("*.yaml"))
# (id, values file or None for the chart's defaults)
ALL_VALUES: list[tuple[str, Path | None]] = [
    ("default", None),
    *[(p.stem.removesuffix("-values"), p) for p in VALUE_SETS],
]


@dataclass
class Helm:
    binary: Path
    home: Path
    kubeconfig: Path | None = None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        # keep helm's caches and repositories out of the user's home
        env.update(
            HELM_CACHE_HOME=str(self.home / "cache"),
            HELM_CONFIG_HOME=str(self.home / "config"),
            HELM_DATA_HOME=str(self.home / "data"),
        )
        if self.kubeconfig is not None:
            env["KUBECONFIG"] = str(self.kubeconfig)
        return env

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.binary), *args],
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=300,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
            )
        return result

    def template(
        self,
        values: Path | None = None,
        *,
        namespace: str = "nico-flow",
        release: str = "flow",
        extra: tuple[str, ...] = (),
    ) -> str:
        args = ["template", release, str(CHART), f"--namespace={namespace}"]
        if values is not None:
            args.append(f"--values={values}")
        return self.run(*args, *extra).stdout

    def render(
        self,
        values: Path | None = None,
        *,
        namespace: str = "nico-flow",
        release: str = "flow",
        extra: tuple[str, ...] = (),
    ) -> list[dict[str, Any]]:
        text = self.template(values, namespace=namespace, release=release, extra=extra)
        return [d for d in yaml.safe_load_all(text) if d]


def kinds(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def one(docs: list[dict[str, Any]], kind: str, component: str | None = None) -> dict[str, Any]:
    found = [
        d
        for d in kinds(docs, kind)
        if component is None
        or d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component
    ]
    assert len(found) == 1, f"expected one {kind} {component or ''}, found {len(found)}"
    return found[0]
