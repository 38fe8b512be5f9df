"""Output of the client commands: JSON/YAML data and rich tables."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import yaml
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.cli.client_output import (
    age,
    components_table,
    progress_table,
    racks_table,
    render_data,
    tasks_table,
)
from nicoflow.client.progress import StageProgress, StepProgress, TaskProgress


def _text(renderable: object) -> str:
    buf = io.StringIO()
    Console(file=buf, width=250, color_system=None).print(renderable)
    return buf.getvalue()


RACK = pb.Rack(
    info=pb.DeviceInfo(
        id=pb.UUID(id="r-1"), name="a01", manufacturer="NVIDIA", serial_number="S1", model="GB200"
    ),
    location=pb.Location(datacenter="dc1", room="hall-2", position="a/01"),
    components=[
        pb.Component(
            type=pb.COMPONENT_TYPE_COMPUTE,
            info=pb.DeviceInfo(id=pb.UUID(id="c-1"), name="compute-01", serial_number="CT1"),
            component_id="fm100",
            position=pb.RackPosition(slot_id=36, tray_idx=16),
            bmcs=[
                pb.BMCInfo(
                    type=pb.BMC_TYPE_HOST, mac_address="02:00:00:00:00:01", ip_address="10.0.0.1"
                )
            ],
            power_state="on",
        )
    ],
)


def test_json_uses_proto_field_names_and_keeps_empty_fields() -> None:
    data = json.loads(render_data({"racks": [RACK], "total": 1}, "json"))
    rack = data["racks"][0]
    assert rack["info"]["serial_number"] == "S1"
    comp = rack["components"][0]
    assert comp["type"] == "COMPONENT_TYPE_COMPUTE"
    assert comp["position"] == {"slot_id": 36, "tray_idx": 16, "host_id": 0}
    assert comp["firmware_version"] == ""  # stable keys for scripts
    assert data["total"] == 1


def test_yaml_is_the_same_data() -> None:
    assert yaml.safe_load(render_data([RACK], "yaml")) == json.loads(render_data([RACK], "json"))


def test_rack_and_component_tables() -> None:
    text = _text(racks_table([RACK], total=7))
    assert "1 of 7 racks" in text
    assert "a01" in text
    assert "dc1/hall-2/a/01" in text
    assert "GB200" in text
    comps = _text(components_table(RACK.components))
    assert "Compute" in comps
    assert "36/16" in comps
    assert "host 02:00:00:00:00:01 10.0.0.1" in comps


def test_task_table_shows_status_words() -> None:
    created = Timestamp()
    created.FromDatetime(datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC))
    task = pb.Task(
        id=pb.UUID(id="t-1"),
        operation="PowerOn, forced false",
        status=pb.TASK_STATUS_WAITING,
        created_at=created,
    )
    text = _text(tasks_table([task], total=1))
    assert "waiting" in text
    assert "PowerOn, forced false" in text
    assert "2030-01-02 03:04:05" in text


def test_progress_table_per_rack() -> None:
    stage = StageProgress(2, "running", (StepProgress("NVSwitch", "running", 9, 4, 1),))
    p = TaskProgress("t-1", "r-1", "PowerOn", "running", "", (StageProgress(1, "completed"), stage))
    text = _text(progress_table([p], {"r-1": "a01"}))
    assert "0/1 tasks finished" in text
    assert "a01" in text
    assert "2/2 running" in text
    assert "NVSwitch running 4/9 (1 failed)" in text


def test_age() -> None:
    ts = Timestamp()
    ts.FromDatetime(datetime(2030, 1, 1, tzinfo=UTC))
    assert age(ts, datetime(2030, 1, 1, 2, 30, tzinfo=UTC)) == "2h"
    assert age(ts, datetime(2030, 1, 1, 0, 0, 9, tzinfo=UTC)) == "9s"
