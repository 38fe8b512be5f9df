"""`flow crds --also DIR`: the chart's copy of the CRDs is written and checked
together with crds/."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from nicoflow.api.crdgen import render_all
from nicoflow.cli.crds import crds


def test_also_writes_and_checks_every_directory(tmp_path: Path) -> None:
    main, chart = tmp_path / "crds", tmp_path / "chart" / "files" / "crds"
    runner = CliRunner()
    result = runner.invoke(crds, ["-o", str(main), "--also", str(chart)])
    assert result.exit_code == 0, result.output
    rendered = render_all()
    for directory in (main, chart):
        assert {p.name: p.read_text() for p in directory.glob("*.yaml")} == rendered

    ok = runner.invoke(crds, ["-o", str(main), "--also", str(chart), "--check"])
    assert ok.exit_code == 0
    (chart / "tasks.flow.nico.io.yaml").write_text("stale\n")
    stale = runner.invoke(crds, ["-o", str(main), "--also", str(chart), "--check"])
    assert stale.exit_code == 1
    assert f"stale CRDs in {chart}" in stale.output
    assert "tasks.flow.nico.io.yaml" in stale.output
    assert f"stale CRDs in {main}" not in stale.output
