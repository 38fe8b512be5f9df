from __future__ import annotations

from pathlib import Path

import pytest

from nicoflow.domain.types import BMCType, ComponentType
from nicoflow.simulator.site import (
    SiteFileError,
    check_unique,
    dump_site,
    generate_site,
    load_site,
    rack_label,
    row_label,
    site_from_dict,
    site_to_dict,
)


def test_a_rack_is_a_gb200_nvl72() -> None:
    site = generate_site(1, seed=3)
    rack = site.racks[0]
    assert len(rack.of_type(ComponentType.COMPUTE)) == 18
    assert len(rack.of_type(ComponentType.NVSWITCH)) == 9
    assert len(rack.of_type(ComponentType.POWERSHELF)) == 8
    for tray in rack.of_type(ComponentType.COMPUTE):
        assert [b.type for b in tray.bmcs] == [BMCType.HOST, BMCType.DPU, BMCType.DPU]
        assert tray.position.host_id == tray.position.tray_index + 1
    assert site.counts() == {
        "compute": 18,
        "nvswitch": 9,
        "powershelf": 8,
        "dpu": 36,
        "racks": 1,
    }
    assert (rack.manufacturer, rack.model) == ("NVIDIA", "GB200 NVL72")


def test_slots_are_distinct_within_a_rack() -> None:
    rack = generate_site(1).racks[0]
    slots = [c.position.slot_id for c in rack.components]
    assert len(set(slots)) == len(slots)


def test_generation_is_deterministic_per_seed() -> None:
    assert site_to_dict(generate_site(3, seed=5)) == site_to_dict(generate_site(3, seed=5))
    a, b = generate_site(2, seed=1), generate_site(2, seed=2)
    comps_a = [c for _, c in a.components()]
    comps_b = [c for _, c in b.components()]
    assert {c.core_id for c in comps_a}.isdisjoint(c.core_id for c in comps_b)
    assert {c.serial for c in comps_a}.isdisjoint(c.serial for c in comps_b)
    assert {c.bmc.mac for c in comps_a}.isdisjoint(c.bmc.mac for c in comps_b)


def test_identifiers_are_unique_and_well_formed() -> None:
    site = generate_site(40, seed=9)
    check_unique(site)  # raises on any duplicate
    for _, comp in site.components():
        for bmc in comp.bmcs:
            first = int(bmc.mac.split(":")[0], 16)
            assert first & 0x02, "locally administered"
            assert not first & 0x01, "unicast"
            assert bmc.ip.startswith("10.")
        if comp.type == ComponentType.COMPUTE:
            assert comp.core_id.startswith("fm100ht")
            assert len(comp.core_id) == 7 + 52
            assert all(d.core_id.startswith("fm100ds") for d in comp.dpus)
        elif comp.type == ComponentType.NVSWITCH:
            assert comp.core_id.startswith("fsw100s")
            assert comp.nvos_ip
        else:
            assert comp.core_id.startswith("fps100s")


def test_rack_labels() -> None:
    assert row_label(0) == "a"
    assert row_label(25) == "z"
    assert row_label(26) == "aa"
    assert rack_label(0) == "a01"
    assert rack_label(32) == "b01"
    site = generate_site(2)
    assert [r.core_id for r in site.racks] == ["rack-a01", "rack-a02"]


def test_uningested_racks_are_the_last_ones() -> None:
    site = generate_site(3, uningested=1)
    assert [r.ingested for r in site.racks] == [True, True, False]
    with pytest.raises(ValueError, match="uningested"):
        generate_site(1, uningested=2)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_site_file_round_trip(tmp_path: Path, suffix: str) -> None:
    site = generate_site(2, seed=4, uningested=1)
    path = tmp_path / f"site{suffix}"
    dump_site(site, path)
    loaded = load_site(path)
    assert site_to_dict(loaded) == site_to_dict(site)


def test_site_file_shorthand() -> None:
    site = site_from_dict({"racks": 2, "seed": 8})
    assert site_to_dict(site) == site_to_dict(generate_site(2, seed=8))


def test_site_file_rejects_duplicates() -> None:
    data = site_to_dict(generate_site(1))
    comps = data["racks"][0]["components"]
    comps[1]["serial_number"] = comps[0]["serial_number"]
    with pytest.raises(SiteFileError, match="duplicate serial"):
        site_from_dict(data)


def test_site_file_names_missing_fields() -> None:
    data = site_to_dict(generate_site(1))
    del data["racks"][0]["components"][0]["bmc"]
    with pytest.raises(SiteFileError, match=r"racks\[0\]\.components\[0\]: missing 'bmc'"):
        site_from_dict(data)
