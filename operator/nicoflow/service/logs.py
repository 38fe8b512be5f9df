"""Structured (JSON lines) logs for `flow serve`, on stderr, in the format
every `flow` process shares (nicoflow.logfmt): dotted `extra` fields such as
grpc.code become top-level keys."""

from __future__ import annotations

from typing import TextIO

from nicoflow import logfmt


def configure(dev_mode: bool, stream: TextIO | None = None) -> None:
    logfmt.configure("json", verbose=dev_mode, stream=stream)
