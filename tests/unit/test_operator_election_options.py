"""`flow operator`'s leader-election options are checked before anything starts."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from nicoflow.cli.operator import operator


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--leader-elect", "--peering=x"], {}, "--peering and leader election exclude each other"),
        # in a Pod leader election is on by default, so peering needs --no-leader-elect
        (["--peering=x"], {"POD_NAMESPACE": "flow"}, "exclude each other"),
        (
            [
                "--leader-elect",
                "--leader-elect-lease-duration=5",
                "--leader-elect-renew-deadline=5",
            ],
            {},
            "lease duration must be longer than the renew deadline",
        ),
        (
            ["--leader-elect", "--leader-elect-retry-period=10"],
            {},
            "renew deadline must be longer than the retry period",
        ),
    ],
)
def test_refused(args: list[str], env: dict[str, str], message: str) -> None:
    result = CliRunner().invoke(operator, args, env=env)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_help_names_the_defaults() -> None:
    out = CliRunner().invoke(operator, ["--help"], terminal_width=200).output
    for text in (
        "--leader-elect / --no-leader-elect",
        "--leader-election-id",
        "nico-flow-operator",
        "--leader-elect-lease-duration",
        "default: 15",
    ):
        assert text in out
