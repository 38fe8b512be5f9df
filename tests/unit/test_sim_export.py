from __future__ import annotations

import json

import yaml

from nicoflow.api.rack import RackSpec
from nicoflow.simulator.export import ExportFormat, export_site, rack_json, rack_object
from nicoflow.simulator.site import generate_site


def test_rack_json_has_the_flow_rack_create_shape() -> None:
    rack = generate_site(1, seed=2).racks[0]
    doc = rack_json(rack)
    assert set(doc) == {"info", "location", "components"}
    assert doc["info"]["manufacturer"] == "NVIDIA"
    assert doc["info"]["serial_number"] == rack.serial
    assert len(doc["components"]) == 35
    tray = next(c for c in doc["components"] if c["type"] == "compute")
    assert set(tray) == {
        "type",
        "info",
        "firmware_version",
        "component_id",
        "position",
        "bmcs",
    }
    assert tray["component_id"].startswith("fm100ht")
    assert [b["type"] for b in tray["bmcs"]] == ["host", "dpu", "dpu"]
    assert set(tray["position"]) == {"slot_id", "tray_index", "host_id"}
    assert tray["firmware_version"] == "25.01.1"


def test_k8s_rack_validates_against_the_crd_model() -> None:
    rack = generate_site(1, seed=2).racks[0]
    obj = rack_object(rack)
    assert obj["apiVersion"] == "flow.nico.io/v1alpha1"
    assert obj["kind"] == "Rack"
    assert "namespace" not in obj["metadata"]
    spec = RackSpec.model_validate(obj["spec"])
    assert spec.core_id == rack.core_id
    assert spec.identity.serial_number == rack.serial
    assert [c.core_id for c in spec.components] == [c.core_id for c in rack.components]
    assert obj["spec"]["components"][0]["bmcs"][0]["macAddress"] == rack.components[0].bmc.mac


def test_exports_are_deterministic_for_a_seed() -> None:
    for fmt in ExportFormat:
        a = export_site(generate_site(2, seed=7), fmt, yaml_output=True)
        b = export_site(generate_site(2, seed=7), fmt, yaml_output=True)
        c = export_site(generate_site(2, seed=8), fmt, yaml_output=True)
        assert a == b
        assert a != c


def test_k8s_export_as_yaml_stream_or_json_list() -> None:
    site = generate_site(2)
    docs = list(yaml.safe_load_all(export_site(site, ExportFormat.K8S, yaml_output=True)))
    assert [d["metadata"]["name"] for d in docs] == ["rack-a01", "rack-a02"]
    as_list = json.loads(export_site(site, ExportFormat.K8S, yaml_output=False))
    assert as_list["kind"] == "List"
    assert as_list["items"] == docs
