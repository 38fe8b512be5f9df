"""Errors of the Flow client: one exception type carrying the gRPC status."""

from __future__ import annotations

import grpc


def code_text(code: grpc.StatusCode) -> str:
    """The code as the original's tools print it ("NotFound", "InvalidArgument")."""
    return "".join(part.capitalize() for part in code.name.split("_"))


class FlowError(Exception):
    """A call failed: `code` is the gRPC status code, `message` the server's words."""

    def __init__(self, code: grpc.StatusCode, message: str, *, hint: str = "") -> None:
        self.code = code
        self.message = message
        self.hint = hint
        super().__init__(f"{code_text(code)}: {message}")

    @property
    def code_name(self) -> str:
        return code_text(self.code)

    def describe(self) -> str:
        text = f"{self.code_name}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text


class ClientConfigError(ValueError):
    """Connection settings that cannot work (missing or half-given certificates)."""
