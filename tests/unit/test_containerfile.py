"""The Containerfile, checked by structure: pinned bases, a non-root runtime,
only the virtual environment copied over, `flow` as the entrypoint, the locked
environment without dev dependencies. (hack/build-images.sh builds it on a
Debian base of its own; tests/integration/chart/test_chart_live.py runs it.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "Containerfile").read_text()


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", TEXT)
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def stages() -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def _args() -> dict[str, str]:
    return dict(a.split("=", 1) for i, a in instructions() if i == "ARG" and "=" in a)


def test_two_stages_from_pinned_python_311_slim() -> None:
    froms = [a for i, a in instructions() if i == "FROM"]
    assert len(froms) == 2
    assert froms[0].endswith(" AS builder")
    assert froms[1].endswith(" AS runtime")
    image = _args()["PYTHON_IMAGE"]
    assert re.fullmatch(r"[\w./-]+/python:3\.11\.\d+-slim-\w+", image), image
    for base in froms:
        ref = base.split()[0].replace("${PYTHON_IMAGE}", image)
        assert ":" in ref.rsplit("/", 1)[-1], f"unpinned base {ref}"
        assert not ref.endswith(":latest")


def test_builder_syncs_the_lock_without_dev_dependencies() -> None:
    builder = stages()[0]
    runs = [a for i, a in builder if i == "RUN"]
    assert any(re.search(r"pip install .*uv==\d", r) for r in runs), "uv must be pinned"
    syncs = [r for r in runs if "uv sync" in r]
    assert syncs
    assert all("--frozen" in r and "--no-dev" in r for r in syncs)
    assert any("UV_PROJECT_ENVIRONMENT=/app/.venv" in a for i, a in builder if i == "ENV")


def test_runtime_is_non_root_and_holds_only_the_venv() -> None:
    runtime = stages()[1]
    users = [a for i, a in runtime if i == "USER"]
    assert users
    uid = users[-1].split(":")[0]
    assert uid.isdigit()
    assert int(uid) == 10001, "the chart's securityContext runs as 10001"
    copies = [a for i, a in runtime if i == "COPY"]
    assert copies == ["--from=builder --chown=root:root /app/.venv /app/.venv"]
    assert not any(i == "RUN" and "pip install" in a for i, a in runtime)


def test_entrypoint_is_flow() -> None:
    entry = [a for i, a in instructions() if i == "ENTRYPOINT"]
    assert [json.loads(e) for e in entry] == [["flow"]]
    env = " ".join(a for i, a in stages()[1] if i == "ENV")
    assert "PATH=/app/.venv/bin:$PATH" in env


def test_exposed_ports_match_the_chart() -> None:
    values = (ROOT / "charts" / "nico-flow" / "values.yaml").read_text()
    exposed = next(a for i, a in instructions() if i == "EXPOSE").split()
    assert exposed == ["50051", "8080", "9090"]
    assert "port: 50051" in values
    assert "livenessPort: 8080" in values
    assert "port: 9090" in values
