"""Where the client's TLS material comes from."""

from __future__ import annotations

from pathlib import Path

import pytest

from nicoflow.client.errors import ClientConfigError
from nicoflow.client.tls import TlsSettings, resolve


def _files(d: Path) -> None:
    for name in ("ca.crt", "tls.crt", "tls.key"):
        (d / name).write_bytes(name.encode())


def test_explicit_files_need_all_three(tmp_path: Path) -> None:
    _files(tmp_path)
    with pytest.raises(ClientConfigError, match="all three"):
        resolve(TlsSettings(ca_cert=str(tmp_path / "ca.crt")), env={})
    got = resolve(
        TlsSettings(
            ca_cert=str(tmp_path / "ca.crt"),
            tls_cert=str(tmp_path / "tls.crt"),
            tls_key=str(tmp_path / "tls.key"),
            server_name="flow.internal",
        ),
        env={},
    )
    assert got is not None
    assert (got.ca, got.cert, got.key, got.server_name) == (
        b"ca.crt",
        b"tls.crt",
        b"tls.key",
        "flow.internal",
    )
    assert "tls.key" not in repr(got)


def test_cert_dir_from_env(tmp_path: Path) -> None:
    _files(tmp_path)
    got = resolve(TlsSettings(), env={"CERTDIR": str(tmp_path)})
    assert got is not None
    assert got.source == f"cert dir {tmp_path}"


def test_incomplete_cert_dir_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_text("x")
    with pytest.raises(ClientConfigError, match=r"missing tls\.crt, tls\.key"):
        resolve(TlsSettings(cert_dir=str(tmp_path)), env={})


def test_plaintext_only_when_asked(tmp_path: Path) -> None:
    empty = str(tmp_path)
    with pytest.raises(ClientConfigError, match="--insecure"):
        resolve(TlsSettings(cert_dir=empty), env={})
    assert resolve(TlsSettings(cert_dir=empty, insecure=True), env={}) is None
    assert resolve(TlsSettings(cert_dir=empty), env={"ALLOW_INSECURE_GRPC": "true"}) is None


def test_insecure_with_cert_files_is_refused(tmp_path: Path) -> None:
    _files(tmp_path)
    with pytest.raises(ClientConfigError, match="cannot be combined"):
        resolve(TlsSettings(ca_cert=str(tmp_path / "ca.crt"), insecure=True), env={})
