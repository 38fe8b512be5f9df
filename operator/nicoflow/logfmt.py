"""Log formats shared by every `flow` process: human text, or JSON lines.

Context passed through `extra` is kept as top-level JSON keys: the Task,
rack and stage fields the operator attaches, and dotted keys such as
grpc.method from the gRPC interceptors. Strings registered with `redact`
(a webhook URL with its token) are replaced in every record, its extra
fields and its traceback before any handler writes it."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

CONTEXT_KEYS = ("task", "namespace", "taskspec", "rack", "stage", "operation", "phase")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED = "[redacted]"


class _Redactor(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def scrub(self, text: str) -> str:
        # longest first: a URL goes whole before its path alone is looked for
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        clean = self.scrub(message)
        if clean != message:
            record.msg, record.args = clean, ()
        for key, value in list(record.__dict__.items()):
            if isinstance(value, str) and (key in CONTEXT_KEYS or "." in key):
                record.__dict__[key] = self.scrub(value)
            elif isinstance(value, dict) and key not in ("args",):
                record.__dict__[key] = json.loads(self.scrub(json.dumps(value, default=str)))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        return True


_REDACTOR = _Redactor()


def redact(*secrets: str) -> None:
    """Never write these strings to a log (each at least 6 characters long)."""
    _REDACTOR.secrets.update(s for s in secrets if len(s) >= 6)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key in CONTEXT_KEYS or "." in key:
                out[key] = value
        if record.exc_text:  # set (and scrubbed) by the redactor
            out["exception"] = record.exc_text
        elif record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure(fmt: str = "text", *, verbose: bool = False, stream: TextIO | None = None) -> None:
    """Root logging for a process: `fmt` is "text" or "json"."""
    if fmt not in ("text", "json"):
        raise ValueError(f"log format must be text or json, not {fmt!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(_REDACTOR)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("httpx", "httpcore", "sqlalchemy.engine", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
