"""Property-based fuzzing of our custom resources against the real apiserver,
with server-side dry run (nothing is stored).

Specs are drawn from the CRD's own structural schema (as the apiserver serves
it), conforming or broken here and there (reliability/schema_strategies.py).
Whatever the apiserver refuses it refuses with 422 and a message, never with
a 500; whatever it accepts, our pydantic model of that kind parses too — the
CRD schema and the models agree."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from reliability.schema_strategies import SchemaStrategies

from nicoflow.api import crdgen
from nicoflow.api.common import API_VERSION
from nicoflow.api.common import CrdInfo as Info
from nicoflow.devstack.controlplane import ControlPlane

pytestmark = pytest.mark.reliability

EXAMPLES = 200
KINDS = {info.kind: info for info in crdgen.KINDS}


# Checks of rule definitions that the models make and the CRD's CEL rules do
# not: the apiserver would store such a rule, and the operator and the API then
# refuse to read it. Each entry maps a fragment of the model's message to an
# example spec (add a test beside it that fails once CEL closes it). None is
# open now: zero timeouts and poll intervals, intervals longer than timeouts,
# actions foreign to the operation or given parameters they do not read are
# all refused by CEL.
KNOWN_GAPS: dict[str, dict[str, Any]] = {}
_NAME = st.from_regex(r"fz-[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)


@pytest.fixture(scope="module")
def apiserver(control_plane: ControlPlane, crds_installed: list[str]) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=control_plane.server,
        verify=False,
        headers={"Authorization": f"Bearer {control_plane.token}"},
        timeout=30,
    ) as client:
        yield client


def served_schema(api: httpx.Client, info: Info) -> dict[str, Any]:
    """The spec schema the apiserver enforces for `info` (not our files)."""
    crd = api.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{info.crd_name}")
    crd.raise_for_status()
    version = next(v for v in crd.json()["spec"]["versions"] if v["served"])
    spec: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    # the drawn examples follow the schema's key order: fix it, so a run is
    # repeatable whatever order the apiserver returns
    canonical: dict[str, Any] = json.loads(json.dumps(spec, sort_keys=True))
    return canonical


def _path(info: Info, namespace: str) -> str:
    base = f"/apis/{API_VERSION}"
    if info.scope == "Namespaced":
        base += f"/namespaces/{namespace}"
    return f"{base}/{info.plural}"


def test_every_kind_is_fuzzed() -> None:
    assert set(KINDS) == {
        "TaskSpec",
        "Task",
        "Rack",
        "OperationRule",
        "TaskSchedule",
        "RackAccessPolicy",
    }


@pytest.mark.timeout(600)
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_apiserver_and_models_agree_on_fuzzed_specs(
    apiserver: httpx.Client, namespace: str, kind: str
) -> None:
    info = KINDS[kind]
    schema = served_schema(apiserver, info)
    valid = SchemaStrategies(valid=True).value(schema)
    specs = st.one_of(valid, SchemaStrategies(valid=False).value(schema), valid)
    path = _path(info, namespace)
    model: type[BaseModel] = info.spec
    outcomes: Counter[int] = Counter()
    gaps: Counter[str] = Counter()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(name=_NAME, spec=specs)
    def one(name: str, spec: Any) -> None:
        body = {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec}
        resp = apiserver.post(path, params={"dryRun": "All"}, json=body)
        outcomes[resp.status_code] += 1
        shown = json.dumps(spec)[:1500]
        assert resp.status_code < 500, f"{resp.status_code} {resp.text[:600]} for {shown}"
        if resp.status_code == 201:
            stored = resp.json()["spec"]
            try:
                model.model_validate(stored)
            except ValidationError as exc:
                known = [g for g in KNOWN_GAPS if all(g in e["msg"] for e in exc.errors())]
                if not known:
                    raise AssertionError(
                        f"accepted, but {model.__name__} refuses {stored}: {exc}"
                    ) from None
                gaps[known[0]] += 1
            return
        assert resp.status_code == 422, f"{resp.status_code} {resp.text[:600]} for {shown}"
        status = resp.json()
        assert status.get("reason") == "Invalid", status
        assert status.get("message"), status
        if len(refusals) < 3:
            refusals.append(str(status["message"])[:300])

    refusals: list[str] = []
    one()
    # both sides of the schema were reached (objects accepted that the model
    # reads, and objects refused), or the property proves little
    assert outcomes[201] - sum(gaps.values()) > 0, (outcomes, gaps, refusals)
    assert outcomes[422] > 0, outcomes
    assert sum(outcomes.values()) >= EXAMPLES
