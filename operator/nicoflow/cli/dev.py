"""`flow dev`: the local stack for development, the demo and benchmarks."""

from __future__ import annotations

from pathlib import Path

import click

from nicoflow.devstack import stack
from nicoflow.devstack.node_config import NODE_NAME


@click.group()
def dev() -> None:
    """Run a local Kubernetes control plane and PostgreSQL on loopback."""


_dir_option = click.option(
    "--dir",
    "root",
    type=click.Path(path_type=Path, file_okay=False),
    default=stack.default_dir,
    show_default="$TMPDIR/nico-flow-dev-UID",
    help="Where the stack keeps its state, data and logs.",
)


@dev.command()
@_dir_option
@click.option(
    "--node",
    "with_node",
    is_flag=True,
    help="Also run a local node (containerd, kubelet, kube-scheduler, kube-proxy, CoreDNS) "
    "with the images of `make images` imported, so Pods run. Needs root.",
)
def up(root: Path, with_node: bool) -> None:
    """Start etcd, kube-apiserver, kube-controller-manager and PostgreSQL."""
    try:
        state = stack.up(root, with_node=with_node)
    except stack.StackError as e:
        raise click.ClickException(str(e)) from e
    _print_env(state)
    if state.node:
        click.echo(
            f"# node {NODE_NAME} runs Pods; images: "
            + ", ".join(f"{role} {ref}" for role, ref in sorted(state.images.items())),
            err=True,
        )


@dev.command()
@_dir_option
def down(root: Path) -> None:
    """Stop the stack (the node's Pods too) and drop its data."""
    click.echo("stopped" if stack.down(root) else "nothing was running")


@dev.command()
@_dir_option
def env(root: Path) -> None:
    """Print shell exports for a running stack: eval "$(flow dev env)"."""
    state = stack.load(root)
    if state is None:
        raise click.ClickException("the local stack is not running: start it with `flow dev up`")
    _print_env(state)


@dev.command()
@_dir_option
def demo(root: Path) -> None:
    """Bring the stack up and run the main job end to end on the embedded defaults."""
    from nicoflow.devstack.demo import run_demo

    run_demo(root)


def _print_env(state: stack.StackState) -> None:
    for key, value in state.env().items():
        click.echo(f"export {key}={value}")
