"""The inventory schema on a real PostgreSQL: migrations up and down, models in
step with the migrated schema, constraints that hold, and `flow db` as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.exc import IntegrityError

from nicoflow.domain.task_ids import task_id
from nicoflow.domain.types import (
    BMCType,
    ComponentType,
    OperationCode,
    OperationType,
    PowerState,
    TaskPhase,
)
from nicoflow.inventory import migrate
from nicoflow.inventory.db import make_engine, make_session_factory
from nicoflow.inventory.models import (
    BMC,
    Base,
    Component,
    ComponentDrift,
    DriftType,
    LeakStatus,
    NVLDomain,
    Rack,
    TaskHistory,
)

FLOW = Path(sys.executable).with_name("flow")
HEAD = "0006"
TABLES = {
    "nvl_domain",
    "rack",
    "component",
    "bmc",
    "component_drift",
    "task_history",
    "task_result",
    "sync_state",
}


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def migrated(database_url: str, engine: Engine) -> Engine:
    migrate.upgrade(database_url)
    return engine


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def _flow(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FLOW), *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )


def _rack(name: str, serial: str, **kw: object) -> Rack:
    return Rack(name=name, manufacturer="NVIDIA", serial_number=serial, **kw)


def _component(
    serial: str, ctype: ComponentType = ComponentType.COMPUTE, **kw: object
) -> Component:
    return Component(type=ctype, manufacturer="NVIDIA", serial_number=serial, **kw)


# --- migrations up and down -------------------------------------------------------------


def test_upgrade_downgrade_upgrade(database_url: str, engine: Engine) -> None:
    assert migrate.current(database_url) is None

    result = migrate.upgrade(database_url)
    assert (result.before, result.after) == (None, migrate.heads()[0])
    assert migrate.current(database_url) == HEAD
    assert migrate.is_up_to_date(database_url)
    assert _tables(engine) == TABLES

    insp = inspect(engine)
    uniques = {u["name"]: u["column_names"] for u in insp.get_unique_constraints("component")}
    assert uniques["uq_component_manufacturer_serial_number"] == ["manufacturer", "serial_number"]
    fks = {fk["name"]: fk for fk in insp.get_foreign_keys("bmc")}
    assert fks["fk_bmc_component_id_component"]["options"]["ondelete"] == "CASCADE"
    (rack_fk,) = insp.get_foreign_keys("component")
    assert rack_fk["options"]["ondelete"] == "SET NULL"
    indexes = {i["name"]: i for i in insp.get_indexes("component")}
    partial = indexes["uq_component_type_external_id"]
    assert partial["unique"]
    assert "external_id IS NOT NULL" in partial["dialect_options"]["postgresql_where"]

    down = migrate.downgrade(database_url, "base")
    assert (down.before, down.after) == (HEAD, None)
    assert _tables(engine) == set()
    with engine.connect() as conn:
        functions = conn.scalar(
            text("SELECT count(*) FROM pg_proc WHERE proname = 'flow_set_updated_at'")
        )
    assert functions == 0

    assert migrate.upgrade(database_url).after == HEAD
    assert _tables(engine) == TABLES


def _columns(engine: Engine, table: str) -> set[str]:
    return {c["name"] for c in inspect(engine).get_columns(table)}


def test_0002_adds_and_removes_its_columns_and_keeps_the_rows(
    database_url: str, engine: Engine
) -> None:
    migrate.upgrade(database_url, "0001")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO rack (name, manufacturer, serial_number) "
                "VALUES ('r1', 'NVIDIA', 'R1');"
                "INSERT INTO component (type, manufacturer, serial_number, leak_status) "
                "VALUES ('nvswitch', 'NVIDIA', 'S1', 'detected');"
                "INSERT INTO component_drift (component_type, drift_type, external_id) "
                "VALUES ('compute', 'unexpected', 'm-1')"
            )
        )
    assert "rack_id" not in _columns(engine, "component_drift")

    up = migrate.upgrade(database_url, "0002")
    assert (up.before, up.after) == ("0001", "0002")
    assert {"nvos_ip", "leak_since"} <= _columns(engine, "component")
    fks = {fk["name"]: fk for fk in inspect(engine).get_foreign_keys("component_drift")}
    assert fks["fk_component_drift_rack_id_rack"]["options"]["ondelete"] == "SET NULL"
    with engine.begin() as conn:
        rack_id = conn.scalar(text("SELECT id FROM rack"))
        # Existing rows read as "not placed / not observed yet".
        assert conn.execute(text("SELECT rack_id FROM component_drift")).all() == [(None,)]
        assert conn.execute(text("SELECT nvos_ip, leak_since FROM component")).all() == [
            (None, None)
        ]
        conn.execute(text("UPDATE component_drift SET rack_id = :r"), {"r": rack_id})
        conn.execute(text("UPDATE component SET nvos_ip = '10.0.0.9', leak_since = now()"))

    down = migrate.downgrade(database_url, "0001")
    assert (down.before, down.after) == ("0002", "0001")
    assert "rack_id" not in _columns(engine, "component_drift")
    assert not {"nvos_ip", "leak_since"} & _columns(engine, "component")
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM component_drift")) == 1
        assert conn.scalar(text("SELECT count(*) FROM component")) == 1

    assert migrate.upgrade(database_url, "0002").after == "0002"
    assert "rack_id" in _columns(engine, "component_drift")


def test_0004_archived_tasks_record_who_asked(database_url: str, engine: Engine) -> None:
    migrate.migrate_to(database_url, "0003")
    assert "requested_by" not in _columns(engine, "task_history")
    assert migrate.upgrade(database_url, "0004").after == "0004"
    assert "requested_by" in _columns(engine, "task_history")
    assert migrate.downgrade(database_url, "0003").after == "0003"
    assert "requested_by" not in _columns(engine, "task_history")


def test_0005_keeps_per_component_results(database_url: str, engine: Engine) -> None:
    migrate.migrate_to(database_url, "0004")
    assert "task_result" not in _tables(engine)
    assert migrate.upgrade(database_url, "0005").after == "0005"
    assert {"task_id", "stage", "component_type", "component_id", "phase"} <= _columns(
        engine, "task_result"
    )
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO task_result (task_id, stage, component_type, component_id, phase) "
                "VALUES (gen_random_uuid(), 1, 'toaster', 'c1', 'Succeeded')"
            )
        )
    assert migrate.downgrade(database_url, "0004").after == "0004"
    assert "task_result" not in _tables(engine)


def test_0006_indexes_live_tasks_by_api_id(database_url: str, engine: Engine) -> None:
    migrate.migrate_to(database_url, "0005")
    uid = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO task_history (id, name, namespace, operation_code, operation_type, "
                "phase, created_at, finished_at) VALUES (:id, 'ts-r1', 'ns', 'power_on', "
                "'power_control', 'Succeeded', now(), now())"
            ),
            {"id": uid},
        )
    assert migrate.upgrade(database_url, "0006").after == "0006"
    with engine.begin() as conn:
        # the existing row got the id the API hands out for it
        assert conn.scalar(text("SELECT api_id FROM task_history")) == task_id("ns", "ts-r1")
        conn.execute(
            text(
                "INSERT INTO task_history (id, name, namespace, operation_code, operation_type, "
                "phase, created_at) VALUES (gen_random_uuid(), 'ts-r2', 'ns', 'power_on', "
                "'power_control', 'Running', now())"
            )
        )
    assert migrate.downgrade(database_url, "0005").after == "0005"
    with engine.connect() as conn:  # the live row has no place in the older history
        assert conn.scalar(text("SELECT count(*) FROM task_history")) == 1
    assert "api_id" not in _columns(engine, "task_history")


def test_purging_a_rack_unplaces_its_unexpected_drift(migrated: Engine) -> None:
    sessions = make_session_factory(migrated)
    with sessions.begin() as s:
        rack = _rack("r1", "R1")
        s.add(rack)
        s.flush()
        s.add(
            ComponentDrift(
                external_id="m-9",
                rack_id=rack.id,
                component_type=ComponentType.COMPUTE,
                drift_type=DriftType.UNEXPECTED,
            )
        )
    with migrated.begin() as conn:
        conn.execute(text("DELETE FROM rack"))
    with migrated.connect() as conn:
        assert conn.execute(text("SELECT external_id, rack_id FROM component_drift")).all() == [
            ("m-9", None)
        ]


def test_nvos_ip_is_validated_by_the_database(migrated: Engine) -> None:
    sessions = make_session_factory(migrated)
    with sessions.begin() as s:
        s.add(_component("S1", ComponentType.NVSWITCH, nvos_ip="10.1.2.3"))
    with sessions() as s:
        assert s.scalars(select(Component.nvos_ip)).all() == ["10.1.2.3"]
    with pytest.raises(Exception, match="inet"), sessions.begin() as s:
        s.add(_component("S2", ComponentType.NVSWITCH, nvos_ip="not-an-ip"))


def test_upgrade_twice_is_a_no_op(database_url: str) -> None:
    migrate.upgrade(database_url)
    again = migrate.upgrade(database_url)
    assert not again.changed
    assert again.after == HEAD


def test_database_ahead_of_the_code_is_refused_clearly(database_url: str, migrated: Engine) -> None:
    with migrated.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(migrate.MigrationError, match="newer release"):
        migrate.migrate_to(database_url, "head")
    # Nothing was touched: the refused run rolled back.
    assert migrate.current(database_url) == "9999"
    assert _tables(migrated) == TABLES


# --- models in step with the migrated schema --------------------------------------------


def test_models_match_the_migrated_schema(migrated: Engine) -> None:
    with migrated.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        diffs = compare_metadata(context, Base.metadata)
    assert diffs == []


def _catalog(conn: object, schema: str) -> dict[str, set[str]]:
    """Constraint and index definitions of a schema, as Postgres prints them."""
    assert hasattr(conn, "execute")
    constraints = conn.execute(
        text(
            "SELECT c.relname, k.conname, pg_get_constraintdef(k.oid) FROM pg_constraint k "
            "JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = :s AND c.relname <> 'alembic_version'"
        ),
        {"s": schema},
    ).all()
    indexes = conn.execute(
        text(
            "SELECT tablename, indexname, indexdef FROM pg_indexes "
            "WHERE schemaname = :s AND tablename <> 'alembic_version'"
        ),
        {"s": schema},
    ).all()

    def clean(sql: str) -> str:
        return sql.replace(f"{schema}.", "")

    return {
        "constraints": {f"{t}.{n}: {clean(d)}" for t, n, d in constraints},
        "indexes": {f"{t}.{n}: {clean(d)}" for t, n, d in indexes},
    }


def test_checks_and_partial_indexes_match_the_models(migrated: Engine) -> None:
    """Autogenerate does not compare CHECK constraints or index predicates, so build
    the schema from the models in a side schema and compare Postgres' own renderings."""
    with migrated.begin() as conn:
        conn.execute(text("CREATE SCHEMA from_models"))
        Base.metadata.create_all(conn.execution_options(schema_translate_map={None: "from_models"}))
    with migrated.connect() as conn:
        from_migration = _catalog(conn, "public")
        from_models = _catalog(conn, "from_models")
    assert from_migration["constraints"] == from_models["constraints"]
    assert from_migration["indexes"] == from_models["indexes"]
    assert any("ck_component_type" in c for c in from_migration["constraints"])


# --- constraints behave ------------------------------------------------------------------


def test_duplicate_serial_is_rejected(migrated: Engine) -> None:
    sessions = make_session_factory(migrated)
    with sessions.begin() as s:
        s.add(_component("SN-1"))
        # Same serial from another manufacturer is another device.
        s.add(Component(type=ComponentType.COMPUTE, manufacturer="Other", serial_number="SN-1"))
    with (
        pytest.raises(IntegrityError, match="uq_component_manufacturer_serial_number"),
        sessions.begin() as s,
    ):
        s.add(_component("SN-1", ComponentType.NVSWITCH))
    with (
        pytest.raises(IntegrityError, match="uq_rack_manufacturer_serial_number"),
        sessions.begin() as s,
    ):
        s.add_all([_rack("r1", "RSN"), _rack("r2", "RSN")])
    with pytest.raises(IntegrityError, match="uq_rack_name"), sessions.begin() as s:
        s.add_all([_rack("same", "A"), _rack("same", "B")])


def test_external_ids_are_unique_per_type_only_when_set(migrated: Engine) -> None:
    sessions = make_session_factory(migrated)
    with sessions.begin() as s:
        s.add_all(
            [
                _component("a", external_id="core-1"),
                _component("b", ComponentType.NVSWITCH, external_id="core-1"),
                _component("c"),
                _component("d"),  # several components without a Core id yet
                _rack("r1", "R1"),
                _rack("r2", "R2"),
                _rack("r3", "R3", external_id="a12"),
            ]
        )
    with (
        pytest.raises(IntegrityError, match="uq_component_type_external_id"),
        sessions.begin() as s,
    ):
        s.add(_component("e", external_id="core-1"))
    with pytest.raises(IntegrityError, match="uq_rack_external_id"), sessions.begin() as s:
        s.add(_rack("r4", "R4", external_id="a12"))


def test_purging_a_component_removes_its_bmcs_and_drift(migrated: Engine) -> None:
    sessions = make_session_factory(migrated)
    with sessions.begin() as s:
        domain = NVLDomain(name="nvl-1")
        rack = _rack("r1", "R1", nvl_domain=domain)
        tray = _component("T1", rack=rack, slot_id=3, tray_index=0, host_id=1)
        tray.bmcs = [
            BMC(mac_address="AA:BB:CC:00:00:01", type=BMCType.HOST, ip_address="10.0.0.1"),
            BMC(mac_address="aa-bb-cc-00-00-02", type=BMCType.DPU),
        ]
        s.add(tray)
        s.flush()
        s.add(
            ComponentDrift(
                component_id=tray.id,
                component_type=ComponentType.COMPUTE,
                drift_type=DriftType.MISSING,
            )
        )
        tray_id, rack_id = tray.id, rack.id

    with sessions() as s:
        loaded = s.get_one(Component, tray_id)
        assert [b.mac_address for b in loaded.bmcs] == ["aa:bb:cc:00:00:01", "aa:bb:cc:00:00:02"]
        assert loaded.bmcs[0].ip_address == "10.0.0.1"

    # Purge with plain SQL: the database, not the ORM, must cascade.
    with migrated.begin() as conn:
        conn.execute(text("DELETE FROM component WHERE id = :id"), {"id": tray_id})
    with migrated.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM bmc")) == 0
        assert conn.scalar(text("SELECT count(*) FROM component_drift")) == 0
        assert conn.scalar(text("SELECT count(*) FROM rack WHERE id = :id"), {"id": rack_id}) == 1


def test_purging_a_rack_unassigns_leftover_components(migrated: Engine) -> None:
    sessions = make_session_factory(migrated)
    with sessions.begin() as s:
        rack = _rack("r1", "R1")
        s.add(_component("T1", rack=rack))
    with migrated.begin() as conn:
        conn.execute(text("DELETE FROM rack"))
    with migrated.connect() as conn:
        assert conn.execute(text("SELECT serial_number, rack_id FROM component")).all() == [
            ("T1", None)
        ]


def test_deleting_a_domain_detaches_its_racks(migrated: Engine) -> None:
    sessions = make_session_factory(migrated)
    with sessions.begin() as s:
        s.add(_rack("r1", "R1", nvl_domain=NVLDomain(name="d")))
    with migrated.begin() as conn:
        conn.execute(text("DELETE FROM nvl_domain"))
    with sessions() as s:
        assert s.scalars(select(Rack.nvl_domain_id)).all() == [None]


@pytest.mark.parametrize(
    ("sql", "constraint"),
    [
        (
            "INSERT INTO component (type, manufacturer, serial_number) VALUES ('gpu', 'm', 's')",
            "ck_component_type",
        ),
        (
            "INSERT INTO component (type, manufacturer, serial_number, power_state) "
            "VALUES ('compute', 'm', 's', 'sleeping')",
            "ck_component_power_state",
        ),
        (
            "INSERT INTO component (type, manufacturer, serial_number, blocked_operations) "
            "VALUES ('compute', 'm', 's', ARRAY['power_control', 'dance'])",
            "ck_component_blocked_operations_known",
        ),
        (
            "INSERT INTO bmc (mac_address, type, component_id) "
            "SELECT 'AA:BB:CC:00:00:01', 'host', id FROM component",
            "ck_bmc_mac_address_normalized",
        ),
        (
            "INSERT INTO bmc (mac_address, type, component_id) "
            "SELECT 'aa:bb:cc:00:00:01', 'ipmi', id FROM component",
            "ck_bmc_type",
        ),
    ],
)
def test_raw_writes_cannot_bypass_the_checks(migrated: Engine, sql: str, constraint: str) -> None:
    with migrated.begin() as conn:
        conn.execute(
            text("INSERT INTO component (type, manufacturer, serial_number) VALUES ('cdu','m','x')")
        )
    with pytest.raises(IntegrityError, match=constraint), migrated.begin() as conn:
        conn.execute(text(sql))


def test_database_defaults_serve_raw_writers(migrated: Engine) -> None:
    with migrated.begin() as conn:
        row = conn.execute(
            text(
                "INSERT INTO component (type, manufacturer, serial_number) "
                "VALUES ('compute', 'm', 's') "
                "RETURNING id, power_state, status_phase, leak_status, blocked_operations, "
                "description, created_at, updated_at"
            )
        ).one()
    assert isinstance(row.id, uuid.UUID)
    assert (row.power_state, row.status_phase, row.leak_status) == ("unknown", "unknown", "unknown")
    assert row.blocked_operations == []
    assert row.description == {}

    # updated_at moves on a raw UPDATE (trigger), in a later transaction.
    time.sleep(0.01)
    with migrated.begin() as conn:
        updated = conn.scalar(
            text("UPDATE component SET power_state = 'on' WHERE id = :id RETURNING updated_at"),
            {"id": row.id},
        )
    assert updated > row.updated_at


def test_orm_round_trips_enums_and_observed_state(migrated: Engine) -> None:
    sessions = make_session_factory(migrated)
    observed = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    with sessions.begin() as s:
        c = _component(
            "S",
            ComponentType.POWERSHELF,
            power_state=PowerState.ON,
            actual_firmware={"pmc": "1.2.3"},
            blocked_operations=[OperationType.POWER_CONTROL.value],
            leak_status=LeakStatus.DETECTED,
            observed_at=observed,
        )
        s.add(c)
        s.flush()  # the Python-side uuid4 default is applied at flush
        cid = c.id
    with sessions() as s:
        got = s.get_one(Component, cid)
        assert got.type is ComponentType.POWERSHELF
        assert got.power_state is PowerState.ON
        assert got.leak_status is LeakStatus.DETECTED
        assert got.actual_firmware == {"pmc": "1.2.3"}
        assert got.blocked_operations == ["power_control"]
        assert got.observed_at == observed
    with migrated.connect() as conn:
        stored = conn.execute(text("SELECT type, power_state FROM component")).one()
    assert tuple(stored) == ("powershelf", "on")


def test_task_history_finds_tasks_by_component_through_the_gin_index(migrated: Engine) -> None:
    wanted, other = str(uuid.uuid4()), str(uuid.uuid4())
    rack_id = uuid.uuid4()
    now = datetime.now(UTC)
    sessions = make_session_factory(migrated)
    with sessions.begin() as s:
        for i, comps in enumerate(
            [{"compute": [wanted, other]}, {"nvswitch": [other]}, {"compute": [other]}]
        ):
            s.add(
                TaskHistory(
                    id=uuid.uuid4(),
                    name=f"t{i}",
                    namespace="ns",
                    rack_id=rack_id,
                    rack_name="r1",
                    operation_code=OperationCode.POWER_ON,
                    operation_type=OperationType.POWER_CONTROL,
                    phase=TaskPhase.SUCCEEDED,
                    components=comps,
                    report={"version": 1, "stages": []},
                    created_at=now,
                    finished_at=now,
                )
            )
    query = "SELECT name FROM task_history WHERE components @> CAST(:probe AS jsonb)"
    probe = f'{{"compute": ["{wanted}"]}}'
    with migrated.connect() as conn:
        assert conn.scalars(text(query), {"probe": probe}).all() == ["t0"]
        conn.execute(text("SET enable_seqscan = off"))
        plan = "\n".join(conn.scalars(text(f"EXPLAIN {query}"), {"probe": probe}))
    assert "ix_task_history_components" in plan


# --- concurrency: the migration lock ------------------------------------------------------


def test_migration_waits_for_the_lock(database_url: str, engine: Engine) -> None:
    with engine.connect() as holder:
        holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": migrate.MIGRATION_LOCK_KEY})
        holder.commit()
        proc = subprocess.Popen(
            [str(FLOW), "db", "migrate", "--database-url", database_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # Wait until the migrator is visibly blocked on our lock, then check it did nothing.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                waiting = holder.scalar(
                    text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                        "AND NOT granted AND database = "
                        "(SELECT oid FROM pg_database WHERE datname = current_database())"
                    )
                )
                holder.commit()
                if waiting:
                    break
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.05)
            else:
                pytest.fail("the migrator never queued for the lock")
            assert proc.poll() is None
            assert migrate.current(database_url) is None
        finally:
            holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": migrate.MIGRATION_LOCK_KEY})
            holder.commit()
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert migrate.current(database_url) == HEAD


def test_concurrent_migrators_take_turns(database_url: str, engine: Engine) -> None:
    procs = [
        subprocess.Popen(
            [str(FLOW), "db", "migrate", "--database-url", database_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    stdout = [out for out, _ in outputs]
    assert sum("Migrated" in out for out in stdout) == 1
    assert sum("nothing to do" in out for out in stdout) == 2
    assert _tables(engine) == TABLES


# --- the CLI ------------------------------------------------------------------------------


def test_flow_db_cli_up_and_down(database_url: str, engine: Engine) -> None:
    up = _flow("db", "migrate", "--database-url", database_url)
    assert up.returncode == 0, up.stderr
    assert f"base (empty schema) -> {HEAD} (head)" in up.stdout
    assert _tables(engine) == TABLES

    cur = _flow("db", "current", "--database-url", database_url)
    assert cur.returncode == 0, cur.stderr
    assert cur.stdout.strip() == f"{HEAD} (head)"

    hist = _flow("db", "history", "--database-url", database_url)
    assert hist.returncode == 0, hist.stderr
    assert "base -> 0001:" in hist.stdout
    assert f"0005 -> {HEAD} (head, current)" in hist.stdout

    down = _flow("db", "migrate", "--to", "base", "--database-url", database_url)
    assert down.returncode == 0, down.stderr
    assert f"{HEAD} (head) -> base (empty schema)" in down.stdout
    assert _tables(engine) == set()

    cur = _flow("db", "current", "--database-url", database_url)
    assert cur.stdout.strip() == "base (empty schema)"
    assert "flow db migrate" in cur.stderr

    to_rev = _flow("db", "migrate", "--to", "0001", "--database-url", database_url)
    assert to_rev.returncode == 0, to_rev.stderr
    assert migrate.current(database_url) == "0001"


def test_flow_db_cli_reads_the_environment(database_url: str, engine: Engine) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DB_")}
    env["DATABASE_URL"] = database_url
    result = _flow("db", "migrate", env=env)
    assert result.returncode == 0, result.stderr
    assert migrate.current(database_url) == HEAD


def test_flow_db_cli_errors_are_clear(database_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("DB_")}
    unset = _flow("db", "migrate", env=env)
    assert unset.returncode != 0
    assert "no database configured" in unset.stderr
    assert "Traceback" not in unset.stderr

    bad_rev = _flow("db", "migrate", "--to", "nope", "--database-url", database_url)
    assert bad_rev.returncode != 0
    assert "nope" in bad_rev.stderr
    assert "known revisions: 0001" in bad_rev.stderr
    assert "Traceback" not in bad_rev.stderr

    unreachable = _flow(
        "db", "current", "--database-url", "postgresql://flow:hunter2@127.0.0.1:1/none"
    )
    assert unreachable.returncode != 0
    assert "cannot reach the database" in unreachable.stderr
    assert "hunter2" not in unreachable.stderr


# --- async access ---------------------------------------------------------------------------


async def test_async_engine_reads_the_migrated_schema(database_url: str, migrated: Engine) -> None:
    pytest.importorskip("greenlet", reason="SQLAlchemy asyncio needs greenlet")
    from nicoflow.inventory.db import make_async_engine, make_async_session_factory

    with make_session_factory(migrated).begin() as s:
        s.add(_rack("r1", "R1"))
    engine = make_async_engine(database_url)
    try:
        async with make_async_session_factory(engine)() as session:
            names = (await session.scalars(select(Rack.name))).all()
        assert names == ["r1"]
    finally:
        await engine.dispose()


def test_0003_adds_display_names_and_order_and_keeps_the_rows(
    database_url: str, engine: Engine
) -> None:
    migrate.upgrade(database_url, "0002")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO rack (name, manufacturer, serial_number) "
                "VALUES ('r1', 'NVIDIA', 'R1');"
                "INSERT INTO nvl_domain (name) VALUES ('d1');"
                "INSERT INTO component (type, manufacturer, serial_number) "
                "VALUES ('compute', 'NVIDIA', 'C1')"
            )
        )
    assert migrate.upgrade(database_url, "0003").after == "0003"
    assert {"display_name", "ordinal"} <= _columns(engine, "component")
    with engine.begin() as conn:
        assert conn.execute(text("SELECT display_name FROM rack")).all() == [(None,)]
        conn.execute(text("UPDATE rack SET display_name = 'R 1'"))
        conn.execute(
            text(
                "INSERT INTO rack (name, manufacturer, serial_number) VALUES ('r2', 'NVIDIA', 'R2')"
            )
        )
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text("UPDATE rack SET display_name = 'R 1' WHERE name = 'r2'"))
    down = migrate.downgrade(database_url, "0002")
    assert (down.before, down.after) == ("0003", "0002")
    assert "display_name" not in _columns(engine, "rack")
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM rack")) == 2
