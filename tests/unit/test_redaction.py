"""Webhook URLs carry tokens: what may be shown of one, and the log redactor."""

from __future__ import annotations

import io
import json
import logging

import pytest

from nicoflow import logfmt
from nicoflow.controller.alerts import WebhookSink, redact_url

TOKEN = "T0KEN-b9f1c2d3e4"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"https://hooks.example.org/services/{TOKEN}", "https://hooks.example.org/…"),
        (f"https://hooks.example.org:8443/x?token={TOKEN}", "https://hooks.example.org:8443/…"),
        (f"https://user:{TOKEN}@alerts.example.org/", "https://alerts.example.org"),
        ("http://[::1]:9/", "http://[::1]:9"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert TOKEN not in redact_url(url)


def test_a_bad_url_is_refused_without_showing_it() -> None:
    with pytest.raises(ValueError, match="must be http") as err:
        WebhookSink(f"ftp://x/{TOKEN}")
    assert TOKEN not in str(err.value)


def test_the_token_never_reaches_a_log_line() -> None:
    url = f"https://hooks.example.org/services/{TOKEN}?key={TOKEN}x"
    WebhookSink(url)  # registers the URL's parts with the redactor
    out = io.StringIO()
    logfmt.configure("json", stream=out)
    log = logging.getLogger("test.redaction")
    try:
        log.warning("posting to %s", url, extra={"alert.url": url, "alert": {"u": url}})
        try:
            raise RuntimeError(f"cannot reach {url}")
        except RuntimeError:
            log.exception("failed")
    finally:
        logfmt.configure("text")
    text = out.getvalue()
    assert TOKEN not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["message"] == f"posting to {logfmt.REDACTED}"
    assert lines[0]["alert.url"] == logfmt.REDACTED
    assert "cannot reach" in lines[1]["exception"]
