"""`flow crds`: write the CRD YAML rendered from the models."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from nicoflow.api.common import GROUP
from nicoflow.api.crdgen import render_all


def stale_files(output_dir: Path, rendered: dict[str, str]) -> list[str]:
    """Files of output_dir that differ from `rendered`, are missing, or should not exist."""
    stale = [
        name
        for name, text in rendered.items()
        if not (output_dir / name).is_file() or (output_dir / name).read_text() != text
    ]
    # a CRD file of ours whose kind no longer exists
    stale += [p.name for p in sorted(output_dir.glob(f"*.{GROUP}.yaml")) if p.name not in rendered]
    return sorted(stale)


@click.command()
@click.option(
    "--output-dir",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("crds"),
    show_default=True,
    help="Directory to write <plural>.flow.nico.io.yaml files into.",
)
@click.option(
    "--also",
    "also",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Another directory to keep identical, e.g. charts/nico-flow/files/crds (repeatable).",
)
@click.option("--check", is_flag=True, help="Write nothing; exit 1 listing stale files.")
@click.option("--stdout", "to_stdout", is_flag=True, help="Print all CRDs as one YAML stream.")
def crds(output_dir: Path, also: tuple[Path, ...], check: bool, to_stdout: bool) -> None:
    """Render the CRD YAML from the Python models."""
    rendered = render_all()
    if to_stdout:
        click.echo("---\n".join(rendered[name] for name in sorted(rendered)), nl=False)
        return
    directories = [output_dir, *also]
    if check:
        failed = False
        for directory in directories:
            stale = stale_files(directory, rendered)
            if stale:
                failed = True
                click.echo(f"stale CRDs in {directory} (run `flow crds`):", err=True)
                for name in stale:
                    click.echo(f"  {name}", err=True)
            else:
                click.echo(f"{len(rendered)} CRDs in {directory} are up to date")
        if failed:
            sys.exit(1)
        return
    for directory in directories:
        _write(directory, rendered)


def _write(output_dir: Path, rendered: dict[str, str]) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    for name, text in sorted(rendered.items()):
        path = output_dir / name
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            click.echo(f"wrote {path}")
    for name in stale_files(output_dir, rendered):
        if name not in rendered:
            (output_dir / name).unlink()
            click.echo(f"removed {output_dir / name}")
