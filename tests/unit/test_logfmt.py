from __future__ import annotations

import io
import json
import logging

import pytest

from nicoflow import logfmt


@pytest.fixture(autouse=True)
def _restore_root_logger() -> object:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield None
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_keep_context_and_dotted_fields() -> None:
    stream = io.StringIO()
    logfmt.configure("json", stream=stream)
    logging.getLogger("t").info(
        "stage %d done",
        2,
        extra={"task": "t1", "rack": "a01", "stage": 2, "grpc.code": "OK", "ignored": "x"},
    )
    record = json.loads(stream.getvalue().splitlines()[-1])
    assert record["message"] == "stage 2 done"
    assert (record["task"], record["rack"], record["stage"]) == ("t1", "a01", 2)
    assert record["grpc.code"] == "OK"
    assert "ignored" not in record
    assert record["level"] == "info"


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="text or json"):
        logfmt.configure("xml")
