"""`flow import-original` against a PostgreSQL database with the original
service's schema (written here from the reference's table descriptions) and
realistic rows, soft-deleted ones among them: what it creates, that the
original's clients then find everything under the ids they hold, that BMC
credentials end up only in Secrets, and that running it again changes
nothing."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from api_support import Api, running_api
from sqlalchemy import create_engine, text

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.devstack.postgres import Postgres
from nicoflow.kube.client import EVENTS, SECRETS
from nicoflow.kube.resources import RACKS, RULES, SCHEDULES

pytestmark = pytest.mark.integration

# The original's tables (reference: the original's data model), as its
# migrations leave them: soft delete by deleted_at, enums as strings.
SCHEMA = """
CREATE TABLE nvldomain (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name varchar NOT NULL UNIQUE,
  created_at timestamptz NOT NULL DEFAULT now(), deleted_at timestamptz);
CREATE TABLE rack (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name varchar NOT NULL UNIQUE,
  manufacturer varchar NOT NULL, serial_number varchar NOT NULL, description jsonb,
  location jsonb, nvldomain_id uuid, status varchar(16) DEFAULT 'new',
  created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz DEFAULT now(),
  ingested_at timestamptz, deleted_at timestamptz, external_id text,
  UNIQUE (manufacturer, serial_number));
CREATE UNIQUE INDEX rack_external_id ON rack (external_id) WHERE external_id IS NOT NULL;
CREATE TABLE component (
  id uuid PRIMARY KEY, name varchar, type varchar(16) DEFAULT 'Compute',
  manufacturer varchar NOT NULL, model varchar, serial_number varchar NOT NULL,
  description jsonb, firmware_version varchar, rack_id uuid, slot_id bigint,
  tray_index bigint, host_id bigint, ingested_at timestamptz, deleted_at timestamptz,
  external_id text, power_state int DEFAULT 0, status jsonb,
  updated_at timestamptz DEFAULT now(), leak_status varchar(16) NOT NULL DEFAULT 'UNKNOWN',
  UNIQUE (manufacturer, serial_number));
CREATE TABLE bmc (
  mac_address varchar PRIMARY KEY, type varchar,
  component_id uuid NOT NULL REFERENCES component(id) ON DELETE CASCADE,
  ip_address varchar, "user" varchar, password varchar);
CREATE TABLE operation_rules (
  id uuid PRIMARY KEY, name varchar(128) NOT NULL, description text,
  operation_type varchar(64), operation_code varchar(64), rule_definition jsonb NOT NULL,
  is_default bool DEFAULT false, created_at timestamptz DEFAULT now(),
  updated_at timestamptz DEFAULT now());
CREATE UNIQUE INDEX one_default ON operation_rules (operation_type, operation_code)
  WHERE is_default;
CREATE TABLE task (
  id uuid PRIMARY KEY, type varchar(64), executor_type varchar(64), information jsonb,
  description text, rack_id uuid NOT NULL, attributes jsonb NOT NULL DEFAULT '{}',
  execution_id varchar NOT NULL DEFAULT '', status varchar(32), message text, report jsonb,
  applied_rule_id uuid REFERENCES operation_rules(id) ON DELETE SET NULL,
  created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now(),
  started_at timestamptz, finished_at timestamptz, queue_expires_at timestamptz);
CREATE TABLE rack_rule_associations (
  rack_id uuid REFERENCES rack(id) ON DELETE CASCADE, operation_type varchar(64),
  operation_code varchar(64),
  rule_id uuid REFERENCES operation_rules(id) ON DELETE CASCADE,
  created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now(),
  PRIMARY KEY (rack_id, operation_type, operation_code));
CREATE TABLE task_schedule (
  id uuid PRIMARY KEY, name varchar(255) UNIQUE,
  spec_type varchar(16) CHECK (spec_type IN ('interval', 'cron', 'one-time')), spec text,
  timezone varchar(64) DEFAULT 'UTC', operation_template jsonb,
  overlap_policy varchar(16) DEFAULT 'skip' CHECK (overlap_policy IN ('skip', 'queue')),
  enabled bool DEFAULT true, next_run_at timestamptz, last_run_at timestamptz,
  created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now());
CREATE TABLE task_schedule_scope (
  id uuid PRIMARY KEY,
  schedule_id uuid REFERENCES task_schedule(id) ON DELETE CASCADE,
  rack_id uuid REFERENCES rack(id) ON DELETE CASCADE, component_filter jsonb,
  last_task_id uuid REFERENCES task(id) ON DELETE SET NULL,
  created_at timestamptz DEFAULT now(), UNIQUE (schedule_id, rack_id));
"""

PASSWORD = "s3cret-bmc-pw-!x"
OTHER_PASSWORD = "another-pw-77"

ID = {k: uuid.uuid4() for k in (
    "domain", "old_domain", "r1", "r2", "gone", "spare", "gone_comp", "rule_on", "rule_off",
    "bad_rule", "rule_force", "sched", "once_done", "t_done", "t_failed", "t_running", "t_ingest",
)}  # fmt: skip
COMPS = {
    "r1": [
        ("GPU Tray 1", "Compute", 12, 1, "m-r1-a"),
        ("GPU Tray 1", "Compute", 11, 0, "m-r1-b"),
        ("Switch A", "NVSwitch", 20, 0, "s-r1-a"),
        ("Shelf 1", "PowerShelf", 1, 0, "p-r1-a"),
    ],
    "r2": [
        ("compute-01", "Compute", 11, 0, "m-r2-a"),
        ("mystery", "Toaster", 2, 0, ""),  # a type the original never had: not mapped
    ],
    "gone": [("compute-01", "Compute", 11, 0, "m-gone")],
}
COMP_IDS = {(rack, i): uuid.uuid4() for rack, comps in COMPS.items() for i in range(len(comps))}
TEN_MIN = timedelta(minutes=10)
T0 = datetime(2026, 5, 1, 8, tzinfo=UTC)


def _power_rule(verify: str) -> dict[str, Any]:
    # how the original stored it: Go-marshalled durations, "0s" for unset
    return {
        "version": "v1",
        "steps": [
            {
                "component_type": "PowerShelf", "stage": 1, "max_parallel": 0,
                "timeout": "15m0s", "delay_after": "0s",
                "main_operation": {"name": "PowerControl", "timeout": "0s", "poll_interval": "0s"},
                "post_operation": [
                    {"name": "VerifyPowerStatus", "timeout": "5m0s", "poll_interval": "10s",
                     "parameters": {"expected_status": verify}},
                    {"name": "Sleep", "timeout": "0s", "poll_interval": "0s",
                     "parameters": {"duration": 10000000000}},
                ],
            },
            {"component_type": "Compute", "stage": 2, "max_parallel": 4, "timeout": "0s",
             "delay_after": "0s",
             "main_operation": {"name": "PowerControl", "timeout": "0s", "poll_interval": "0s"}},
        ],
    }  # fmt: skip


def _rows(tag: str) -> list[tuple[str, dict[str, Any]]]:
    rows: list[tuple[str, dict[str, Any]]] = []

    def add(sql: str, **params: Any) -> None:
        rows.append((sql, params))

    add(
        "INSERT INTO nvldomain (id, name) VALUES (:id, :name)",
        id=ID["domain"],
        name=f"NVL Wire 3 {tag}",
    )
    add(
        "INSERT INTO nvldomain (id, name, deleted_at) VALUES (:id, :name, now())",
        id=ID["old_domain"],
        name=f"old-{tag}",
    )
    for key, name, domain, core in (
        ("r1", f"R1 {tag}", ID["domain"], f"core-r1-{tag}"),
        ("r2", f"rack-02-{tag}", None, None),
        ("gone", f"gone-{tag}", None, None),
    ):
        add(
            "INSERT INTO rack (id, name, manufacturer, serial_number, description, location, "
            "nvldomain_id, external_id, deleted_at) VALUES (:id, :name, 'NVIDIA', :serial, "
            "CAST(:desc AS jsonb), CAST(:loc AS jsonb), :domain, :core, "
            + ("now())" if key == "gone" else "NULL)"),
            id=ID[key],
            name=name,
            serial=f"NVL72-{key}-{tag}",
            desc=json.dumps({"model": "GB200 NVL72", "description": f"rack {key}"}),
            loc=json.dumps(
                {"region": "us-west", "datacenter": "dc1", "room": "h2", "position": key}
            ),
            domain=domain,
            core=core,
        )
        for i, (cname, ctype, slot, tray, ext) in enumerate(COMPS[key]):
            cid = COMP_IDS[(key, i)]
            add(
                "INSERT INTO component (id, name, type, manufacturer, model, serial_number, "
                "description, firmware_version, rack_id, slot_id, tray_index, host_id, "
                "external_id, deleted_at) VALUES (:id, :name, :type, 'NVIDIA', 'tray', :serial, "
                "CAST(:desc AS jsonb), '1.2.3', :rack, :slot, :tray, 0, :ext, "
                + ("now())" if key == "gone" else "NULL)"),
                id=cid,
                name=cname,
                type=ctype,
                serial=f"{key}-{i}-{tag}",
                desc=json.dumps({"note": f"tray {i}"}),
                rack=ID[key],
                slot=slot,
                tray=tray,
                ext=ext or None,
            )
            pw = OTHER_PASSWORD if (key, i) == ("r2", 1) else PASSWORD
            add(
                'INSERT INTO bmc (mac_address, type, component_id, ip_address, "user", password) '
                "VALUES (:mac, 'Host', :cid, :ip, 'admin', :pw)",
                mac=f"02:{tag[0:2]}:{tag[2:4]}:{tag[4:6]}:{list(COMPS).index(key):02x}:{i:02x}",
                cid=cid,
                ip=f"10.1.{list(COMPS).index(key)}.{i + 1}",
                pw=pw,
            )
    add(
        "INSERT INTO component (id, name, type, manufacturer, serial_number) "
        "VALUES (:id, 'spare tray', 'Compute', 'NVIDIA', :serial)",
        id=ID["spare"],
        serial=f"spare-{tag}",
    )
    for key, code, verify, default in (
        ("rule_on", "power_on", "on", True),
        ("rule_off", "power_off", "off", False),
        ("rule_force", "force_power_off", "off", False),
    ):
        add(
            "INSERT INTO operation_rules (id, name, description, operation_type, operation_code, "
            "rule_definition, is_default) VALUES (:id, :name, 'imported', 'power_control', "
            ":code, CAST(:defn AS jsonb), :default)",
            id=ID[key],
            name=f"{code} {tag}",
            code=code,
            defn=json.dumps(_power_rule(verify)),
            default=default,
        )
    add(
        "INSERT INTO operation_rules (id, name, operation_type, operation_code, rule_definition) "
        "VALUES (:id, :name, 'power_control', 'power_off', CAST(:defn AS jsonb))",
        id=ID["bad_rule"],
        name=f"broken {tag}",
        defn=json.dumps(
            {
                "version": "v1",
                "steps": [
                    {"component_type": "Gpu", "stage": 1, "main_operation": {"name": "Reboot"}}
                ],
            }
        ),
    )
    add(
        "INSERT INTO rack_rule_associations (rack_id, operation_type, operation_code, rule_id) "
        "VALUES (:rack, 'power_control', 'power_off', :rule)",
        rack=ID["r1"],
        rule=ID["rule_off"],
    )
    template = {
        "type": "power_control",
        "code": "force_power_off",
        "information": {"operation": 4, "forced": True},
        "conflict_strategy": 0,
        "queue_timeout_secs": 0,
        "rule_id": str(ID["rule_force"]),
    }
    add(
        "INSERT INTO task_schedule (id, name, spec_type, spec, timezone, operation_template, "
        "overlap_policy, enabled, next_run_at) VALUES (:id, :name, 'cron', '0 2 * * *', "
        "'Europe/Berlin', CAST(:tmpl AS jsonb), 'skip', true, now() + interval '1 hour')",
        id=ID["sched"],
        name=f"Nightly Off {tag}",
        tmpl=json.dumps(template),
    )
    add(
        "INSERT INTO task_schedule (id, name, spec_type, spec, operation_template, enabled) "
        "VALUES (:id, :name, 'one-time', '2026-01-01T00:00:00Z', CAST(:tmpl AS jsonb), false)",
        id=ID["once_done"],
        name=f"Done Once {tag}",
        tmpl=json.dumps(template),
    )
    for rack, filt in ((ID["r1"], {"kind": "types", "types": ["Compute"]}), (ID["r2"], None)):
        add(
            "INSERT INTO task_schedule_scope (id, schedule_id, rack_id, component_filter) "
            "VALUES (:id, :sched, :rack, CAST(:filt AS jsonb))",
            id=uuid.uuid4(),
            sched=ID["sched"],
            rack=rack,
            filt=json.dumps(filt) if filt else None,
        )
    report = {"version": 1, "stages": [{"number": 1, "status": "completed", "steps": []}]}
    for key, kind, info, status in (
        ("t_done", "power_control", {"operation": 4, "forced": True}, "completed"),
        ("t_failed", "firmware_control", {"operation": 1, "target_version": "2.0"}, "failed"),
        ("t_running", "power_control", {"operation": 1}, "running"),
        ("t_ingest", "bring_up", {"op_code": "ingest"}, "terminated"),
    ):
        add(
            "INSERT INTO task (id, type, executor_type, information, description, rack_id, "
            "attributes, status, message, report, applied_rule_id, created_at, started_at, "
            "finished_at) VALUES (:id, :type, 'temporal', CAST(:info AS jsonb), :desc, :rack, "
            "CAST(:attrs AS jsonb), :status, :msg, CAST(:report AS jsonb), :rule, :created, "
            ":started, :finished)",
            id=ID[key],
            type=kind,
            info=json.dumps(info),
            desc=f"{key} by ops",
            rack=ID["r1"],
            attrs=json.dumps({"components_by_type": {"Compute": [str(COMP_IDS[("r1", 0)])]}}),
            status=status,
            msg=status.title(),
            report=json.dumps(report),
            rule=ID["rule_off"] if key == "t_done" else None,
            created=T0,
            started=T0 + timedelta(seconds=5),
            finished=None if status == "running" else T0 + TEN_MIN,
        )
    return rows


@pytest.fixture
def original(postgres: Postgres) -> Iterator[str]:
    name = f"orig_{uuid.uuid4().hex[:12]}"
    url = postgres.create_database(name)
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.begin() as conn:
            conn.execute(text(SCHEMA))
        yield url
    finally:
        engine.dispose()
        postgres.drop_database(name)


KUBECONFIG: list[str] = []


@pytest.fixture
async def api(
    control_plane: ControlPlane, crds_installed: list[str], database_url: str, namespace: str
) -> AsyncIterator[Api]:
    KUBECONFIG[:] = [str(control_plane.kubeconfig)]
    async with running_api(control_plane, database_url, namespace) as a:
        try:
            yield a
        finally:
            for res in (RULES, RACKS):
                for item in await a.kube.list(res):
                    if a.tag in json.dumps(item["metadata"].get("annotations") or {}) or item[
                        "metadata"
                    ]["name"].endswith(a.tag):
                        await a.kube.delete(res, item["metadata"]["name"])


def _seed(url: str, tag: str) -> None:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        for sql, params in _rows(tag):
            conn.execute(text(sql), params)
    engine.dispose()


async def _import(api: Api, original: str, *args: str) -> tuple[int, str, str]:
    env = dict(os.environ)
    env["KUBECONFIG"] = KUBECONFIG[0]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nicoflow.cli.main", "import-original",
        "--database-url", original, "--flow-database-url", api.database_url,
        "-n", api.namespace, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 300)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _state(api: Api) -> dict[str, Any]:
    """What a second run must leave exactly as it was."""
    objects = {}
    for res, ns in ((RACKS, None), (RULES, None), (SCHEDULES, api.namespace),
                    (SECRETS, api.namespace)):  # fmt: skip
        for item in await api.kube.list(res, ns):
            objects[f"{res.plural}/{item['metadata']['name']}"] = item["metadata"][
                "resourceVersion"
            ]
    rows = {}
    async with api.sessions() as session:
        for table in ("rack", "component", "bmc", "nvl_domain", "task_history"):
            result = await session.execute(text(f"SELECT * FROM {table} ORDER BY 1"))
            rows[table] = [tuple(str(v) for v in r) for r in result.all()]
    return {"objects": objects, "rows": rows}


async def test_import_from_the_original_database_twice(api: Api, original: str) -> None:
    _seed(original, api.tag)

    # --- dry run: says what it would do, does nothing ---
    rc, out, err = await _import(api, original, "--dry-run", "-o", "json")
    assert rc == 0, err
    dry = json.loads(out)
    would = {(a["kind"], a["id"]) for a in dry["actions"] if a["result"] == "would create"}
    assert ("rack", str(ID["r1"])) in would
    assert ("schedule", str(ID["sched"])) in would
    assert ("task", str(ID["t_done"])) in would
    not_mapped = {p["id"]: p["reason"] for p in dry["not_mapped"]}
    assert "deleted in the original" in not_mapped[str(ID["gone"])]
    assert "deleted in the original" in not_mapped[str(COMP_IDS[("gone", 0)])]
    assert "deleted in the original" in not_mapped[str(ID["old_domain"])]
    assert "only finished tasks" in not_mapped[str(ID["t_running"])]
    assert "has run already" in not_mapped[str(ID["once_done"])]
    assert "unknown action" in not_mapped[str(ID["bad_rule"])]
    assert "Toaster" in not_mapped[str(COMP_IDS[("r2", 1)])]
    assert "different credentials" in not_mapped[str(ID["r2"])] or any(
        "different credentials" in r for r in not_mapped.values()
    )
    assert PASSWORD not in out + err
    assert [i for i in await api.kube.list(RACKS) if i["metadata"]["name"].endswith(api.tag)] == []

    # --- the import ---
    rc, out, err = await _import(api, original)
    assert rc == 0, err
    assert PASSWORD not in out + err
    assert OTHER_PASSWORD not in out + err

    # the original's clients find their racks, components and names under their ids
    r1 = await api.stub.GetRackInfoByID(
        pb.GetRackInfoByIDRequest(id=pb.UUID(id=str(ID["r1"])), with_components=True)
    )
    assert r1.rack.info.name == f"R1 {api.tag}"
    assert r1.rack.info.model == "GB200 NVL72"
    assert r1.rack.location.position == "r1"
    assert [(c.info.id.id, c.info.name, c.component_id) for c in r1.rack.components] == [
        (str(COMP_IDS[("r1", i)]), n, ext) for i, (n, _, _, _, ext) in enumerate(COMPS["r1"])
    ]
    assert json.loads(r1.rack.components[0].info.description) == {"note": "tray 0"}
    r2 = await api.stub.GetRackInfoByID(
        pb.GetRackInfoByIDRequest(id=pb.UUID(id=str(ID["r2"])), with_components=True)
    )
    assert [c.info.name for c in r2.rack.components] == ["compute-01"]  # the Toaster is not
    missing = await api.stub.GetComponentInfoByID(
        pb.GetComponentInfoByIDRequest(id=pb.UUID(id=str(ID["spare"])))
    )
    assert missing.component.info.name == "spare tray"
    with pytest.raises(Exception, match="not found"):
        await api.stub.GetRackInfoByID(pb.GetRackInfoByIDRequest(id=pb.UUID(id=str(ID["gone"]))))
    members = await api.stub.GetRacksForNVLDomain(
        pb.GetRacksForNVLDomainRequest(
            nvl_domain_identifier=pb.Identifier(name=f"NVL Wire 3 {api.tag}")
        )
    )
    assert [r.info.id.id for r in members.racks] == [str(ID["r1"])]

    # credentials: a Secret the Rack names, and nowhere else
    [obj] = [
        i
        for i in await api.kube.list(RACKS)
        if i["metadata"].get("labels", {}).get("flow.nico.io/rack-id") == str(ID["r1"])
    ]
    ref = obj["spec"]["credentialsSecretRef"]
    secret = await api.kube.get(SECRETS, ref["name"], ref["namespace"])
    assert secret["type"] == "kubernetes.io/basic-auth"
    assert secret["data"] == {
        "username": base64.b64encode(b"admin").decode(),
        "password": base64.b64encode(PASSWORD.encode()).decode(),
    }
    [obj2] = [
        i
        for i in await api.kube.list(RACKS)
        if i["metadata"].get("labels", {}).get("flow.nico.io/rack-id") == str(ID["r2"])
    ]
    assert "credentialsSecretRef" not in obj2["spec"]  # its BMCs had different credentials
    state = await _state(api)
    dump = json.dumps(state["rows"])
    assert PASSWORD not in dump
    assert OTHER_PASSWORD not in dump
    events = await api.kube.list(EVENTS, api.namespace)
    assert PASSWORD not in json.dumps(events)

    # rules keep their ids and definitions; the association holds
    rule = await api.stub.GetOperationRule(
        pb.GetOperationRuleRequest(rule_id=pb.UUID(id=str(ID["rule_on"])))
    )
    assert rule.is_default
    assert rule.operation_code == "power_on"
    steps = json.loads(rule.rule_definition_json)["steps"]
    assert steps[0]["post_operation"][1]["parameters"]["duration"] == "10s"
    assoc = await api.stub.GetRackRuleAssociation(
        pb.GetRackRuleAssociationRequest(
            rack_id=pb.UUID(id=str(ID["r1"])),
            operation_type=pb.OPERATION_TYPE_POWER_CONTROL,
            operation_code="power_off",
        )
    )
    assert assoc.rule_id.id == str(ID["rule_off"])

    # the schedule: same id, suspended until a person resumes it, its scopes
    sched = await api.stub.GetTaskSchedule(
        pb.GetTaskScheduleRequest(id=pb.UUID(id=str(ID["sched"])))
    )
    assert sched.name == f"Nightly Off {api.tag}"
    assert not sched.enabled
    assert (sched.spec.spec, sched.spec.timezone) == ("0 2 * * *", "Europe/Berlin")
    assert sched.operation_type == "POWER_OFF"
    assert sched.description == "Power Off (forced)"
    [obj] = [
        o
        for o in await api.kube.list(SCHEDULES, api.namespace)
        if o["metadata"]["labels"]["flow.nico.io/schedule-id"] == str(ID["sched"])
    ]
    assert obj["spec"]["suspend"] is True
    forced_rule = await api.kube.list(
        RULES, label_selector=f"flow.nico.io/rule-id={ID['rule_force']}"
    )
    assert (
        obj["spec"]["taskSpecTemplate"]["spec"]["ruleRef"]["name"]
        == (forced_rule[0]["metadata"]["name"])
    )
    scopes = await api.stub.ListTaskScheduleScopes(
        pb.ListTaskScheduleScopesRequest(schedule_id=pb.UUID(id=str(ID["sched"])))
    )
    by_rack = {s.rack_id.id: s for s in scopes.scopes}
    assert set(by_rack) == {str(ID["r1"]), str(ID["r2"])}
    assert list(by_rack[str(ID["r1"])].types.types) == [pb.COMPONENT_TYPE_COMPUTE]

    # the task archive, under the original's task ids
    got = await api.stub.GetTasksByIDs(
        pb.GetTasksByIDsRequest(
            task_ids=[pb.UUID(id=str(ID[k])) for k in ("t_done", "t_failed", "t_ingest")]
        )
    )
    tasks = {t.id.id: t for t in got.tasks}
    done = tasks[str(ID["t_done"])]
    assert done.status == pb.TASK_STATUS_COMPLETED
    assert done.operation == "ForcePowerOff, forced true"
    assert done.description == "t_done by ops"
    assert done.applied_rule_id.id == str(ID["rule_off"])
    assert [c.id for c in done.component_uuids] == [str(COMP_IDS[("r1", 0)])]
    assert done.rack_id.id == str(ID["r1"])
    assert json.loads(done.report)["version"] == 1
    assert tasks[str(ID["t_failed"])].status == pb.TASK_STATUS_FAILED
    assert tasks[str(ID["t_ingest"])].status == pb.TASK_STATUS_TERMINATED
    listed = await api.stub.ListTasks(pb.ListTasksRequest(rack_id=pb.UUID(id=str(ID["r1"]))))
    assert {t.id.id for t in listed.tasks} == {
        str(ID[k]) for k in ("t_done", "t_failed", "t_ingest")
    }

    # --- again: nothing changes ---
    rc, out, err = await _import(api, original, "-o", "json")
    assert rc == 0, err
    second = json.loads(out)
    assert {a["result"] for a in second["actions"]} == {"exists"}
    assert await _state(api) == state
