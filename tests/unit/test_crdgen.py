"""CRD rendering: structural schemas, conventions, and committed files in sync."""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from pydantic import BaseModel

from nicoflow.api import admission
from nicoflow.api.common import CrdInfo
from nicoflow.api.crdgen import KINDS, SchemaError, crd, model_schema, render_all
from nicoflow.cli.crds import crds as crds_command
from nicoflow.cli.crds import stale_files

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "crds"
POLICIES = admission.FILENAME
FORBIDDEN_KEYS = ("$ref", "$defs", "anyOf", "allOf", "oneOf", "not", "const", "title", "nullable")


def kind_id(info: CrdInfo) -> str:
    return info.kind


@functools.cache
def _rendered(kind: str) -> dict[str, Any]:
    (info,) = [i for i in KINDS if i.kind == kind]
    return crd(info)


def rendered(info: CrdInfo) -> dict[str, Any]:
    return copy.deepcopy(_rendered(info.kind))


def root(info: CrdInfo) -> dict[str, Any]:
    schema: dict[str, Any] = rendered(info)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("info", KINDS, ids=kind_id)
def test_schema_is_structural(info: CrdInfo) -> None:
    for path, node in walk(root(info)):
        assert "type" in node, path
        for key in FORBIDDEN_KEYS:
            assert key not in node, f"{path}: {key}"
        assert node.get("additionalProperties", True) is not False, path
        assert not ("additionalProperties" in node and "properties" in node), path
        assert not node.get("uniqueItems"), path
        for bound in ("exclusiveMinimum", "exclusiveMaximum"):
            assert isinstance(node.get(bound, True), bool), path
        if "required" in node:
            assert set(node["required"]) <= set(node["properties"]), path


# Strings of the engine's Task status model (nicoflow/api/taskstatus.py) that still
# lack a maxLength; no CEL rule reads them, so they cost nothing yet. Remove entries
# as that model bounds them.


@pytest.mark.parametrize("info", KINDS, ids=kind_id)
def test_every_list_and_string_is_bounded(info: CrdInfo) -> None:
    # CEL cost estimation multiplies these bounds; an unbounded one makes rules fail
    # to register, and unbounded status would let one object grow without limit.
    for path, node in walk(root(info)):
        if path in (".apiVersion", ".kind"):
            continue
        if node["type"] == "array":
            assert "maxItems" in node, path
        if node["type"] == "string":
            assert "maxLength" in node or "enum" in node or node.get("format") == "date-time", path
        if node["type"] == "object" and "additionalProperties" in node:
            assert "maxProperties" in node, path


@pytest.mark.parametrize("info", KINDS, ids=kind_id)
def test_list_map_keys_are_required(info: CrdInfo) -> None:
    for path, node in walk(root(info)):
        if node.get("x-kubernetes-list-type") == "map":
            item = node["items"]
            for key in node["x-kubernetes-list-map-keys"]:
                assert key in item.get("required", []) or "default" in item["properties"][key], (
                    f"{path}: map key {key}"
                )


@pytest.mark.parametrize("info", KINDS, ids=kind_id)
def test_conditions_are_a_map_keyed_by_type(info: CrdInfo) -> None:
    conditions = root(info)["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    item = conditions["items"]
    assert {"type", "status", "lastTransitionTime", "reason"} <= set(item["required"])
    assert "observedGeneration" in item["properties"]


@pytest.mark.parametrize("info", KINDS, ids=kind_id)
def test_status_has_no_defaults_and_observed_generation(info: CrdInfo) -> None:
    status = root(info)["properties"]["status"]
    assert "observedGeneration" in status["properties"]
    assert [p for p, n in walk(status) if "default" in n] == []


@pytest.mark.parametrize("info", KINDS, ids=kind_id)
def test_kubectl_conventions(info: CrdInfo) -> None:
    spec = rendered(info)["spec"]
    version = spec["versions"][0]
    assert spec["names"]["categories"] == ["flow"]
    assert "all" not in spec["names"]["categories"]
    assert version["subresources"] == {"status": {}}
    assert (version["served"], version["storage"]) == (True, True)
    assert spec["names"]["shortNames"]
    default_columns = [c for c in version["additionalPrinterColumns"] if "priority" not in c]
    assert default_columns[-1] == {
        "name": "Age",
        "type": "date",
        "jsonPath": ".metadata.creationTimestamp",
    }
    assert root(info)["required"] == ["spec"]


def test_names_and_scopes() -> None:
    seen = {info.kind: (info.plural, info.scope, info.short_names, info.crd_name) for info in KINDS}
    assert seen == {
        "Rack": ("racks", "Cluster", ("rk",), "racks.flow.nico.io"),
        "OperationRule": (
            "operationrules",
            "Cluster",
            ("oprule", "oprules"),
            "operationrules.flow.nico.io",
        ),
        "TaskSpec": ("taskspecs", "Namespaced", ("ts",), "taskspecs.flow.nico.io"),
        "Task": ("tasks", "Namespaced", ("ftask", "ftasks"), "tasks.flow.nico.io"),
        "TaskSchedule": ("taskschedules", "Namespaced", ("tsched",), "taskschedules.flow.nico.io"),
        "RackAccessPolicy": (
            "rackaccesspolicies",
            "Cluster",
            ("rap", "raps"),
            "rackaccesspolicies.flow.nico.io",
        ),
    }


@pytest.mark.parametrize(
    ("kind", "columns"),
    [
        ("Task", ["Rack", "Operation", "Phase", "Stage", "Age"]),
        ("TaskSpec", ["Operation", "Racks", "Succeeded", "Failed", "Phase", "Age"]),
        ("Rack", ["Manufacturer", "Model", "Components", "Power", "Age"]),
        ("OperationRule", ["Operation", "Default", "Priority", "Age"]),
        ("TaskSchedule", ["Schedule", "Suspend", "Last", "Next", "Age"]),
    ],
)
def test_default_printer_columns(kind: str, columns: list[str]) -> None:
    (info,) = [i for i in KINDS if i.kind == kind]
    version = rendered(info)["spec"]["versions"][0]
    assert [c["name"] for c in version["additionalPrinterColumns"] if "priority" not in c] == (
        columns
    )


def test_printer_columns_point_at_declared_fields() -> None:
    for info in KINDS:
        schema = root(info)
        for column in rendered(info)["spec"]["versions"][0]["additionalPrinterColumns"]:
            path = column["jsonPath"]
            if path.startswith(".metadata") or "[" in path:
                continue
            node = schema
            for part in path.lstrip(".").split("."):
                assert part in node["properties"], f"{info.kind}: {path}"
                node = node["properties"][part]


def rules_in(node: dict[str, Any]) -> list[str]:
    return [r["rule"] for _, n in walk(node) for r in n.get("x-kubernetes-validations", [])]


def test_task_spec_is_immutable_but_schedule_template_is_editable() -> None:
    by_kind = {info.kind: root(info) for info in KINDS}
    task_spec = by_kind["TaskSpec"]["properties"]["spec"]
    template = by_kind["TaskSchedule"]["properties"]["spec"]["properties"]["taskSpecTemplate"]
    assert any("oldSelf" in r for r in rules_in(task_spec))
    assert not any("oldSelf" in r for r in rules_in(template))
    # the non-transition rules of the embedded spec are kept
    assert [r for r in rules_in(task_spec) if "oldSelf" not in r] == rules_in(
        template["properties"]["spec"]
    )
    task = by_kind["Task"]["properties"]["spec"]
    assert any(r.startswith("self.taskSpecName == oldSelf.taskSpecName") for r in rules_in(task))
    assert task["properties"]["cancel"]["x-kubernetes-validations"][0]["rule"] == "!oldSelf || self"


def test_rule_cel_reaches_every_embedded_definition() -> None:
    by_kind = {info.kind: root(info) for info in KINDS}
    rule_def = by_kind["OperationRule"]["properties"]["spec"]["properties"]["definition"]
    task_rule = by_kind["Task"]["properties"]["spec"]["properties"]["rule"]["properties"][
        "definition"
    ]
    assert rules_in(rule_def) == rules_in(task_rule)
    assert any("Sleep" in r for r in rules_in(rule_def))


def test_union_types_are_refused() -> None:
    class Mixed(BaseModel):
        value: int | str

    with pytest.raises(SchemaError, match="union"):
        model_schema(Mixed)


def test_render_is_deterministic_yaml() -> None:
    first, second = render_all(), render_all()
    assert first == second
    ours = [f"{info.plural}.flow.nico.io.yaml" for info in KINDS]
    assert sorted(first) == sorted([*ours, "clusterkopfpeerings.kopf.dev.yaml", POLICIES])
    for name, text in first.items():
        assert text.startswith("# Generated by `flow crds`")
        kind = "List" if name == POLICIES else "CustomResourceDefinition"
        assert yaml.safe_load(text)["kind"] == kind


def test_every_admission_policy_has_its_binding() -> None:
    items = yaml.safe_load(render_all()[POLICIES])["items"]
    policies = {i["metadata"]["name"]: i["kind"] for i in items if "Binding" not in i["kind"]}
    bindings = {i["spec"]["policyName"]: i["kind"] for i in items if "Binding" in i["kind"]}
    assert bindings == {name: kind + "Binding" for name, kind in policies.items()}
    assert set(policies) == {"nico-flow-tasks", "nico-flow-requester", "nico-flow-requested-by"}


def test_committed_crds_are_current() -> None:
    assert stale_files(CRD_DIR, render_all()) == [], "run `flow crds` and commit crds/"
    for name, text in render_all().items():
        assert (CRD_DIR / name).read_text() == text


def test_cli_writes_checks_and_prints(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "crds"
    assert runner.invoke(crds_command, ["--check", "--output-dir", str(out)]).exit_code == 1

    result = runner.invoke(crds_command, ["--output-dir", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(render_all())
    assert runner.invoke(crds_command, ["--check", "-o", str(out)]).exit_code == 0

    (out / "tasks.flow.nico.io.yaml").write_text("stale\n")
    (out / "widgets.flow.nico.io.yaml").write_text("old kind\n")
    result = runner.invoke(crds_command, ["--check", "-o", str(out)])
    assert result.exit_code == 1
    assert "tasks.flow.nico.io.yaml" in result.output
    assert "widgets.flow.nico.io.yaml" in result.output
    assert "racks.flow.nico.io.yaml" not in result.output

    runner.invoke(crds_command, ["-o", str(out)])
    assert not (out / "widgets.flow.nico.io.yaml").exists()
    assert runner.invoke(crds_command, ["--check", "-o", str(out)]).exit_code == 0

    printed = runner.invoke(crds_command, ["--stdout"]).output
    docs = [d for d in yaml.safe_load_all(printed) if d]
    names = [i.crd_name for i in KINDS]
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    assert sorted(d["metadata"]["name"] for d in crds) == sorted(
        [*names, "clusterkopfpeerings.kopf.dev"]
    )
    assert [d["kind"] for d in docs if d not in crds] == ["List"]
