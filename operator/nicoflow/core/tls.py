"""Where the Core client's TLS material comes from.

Explicit files win; otherwise the cert directory ($CERTDIR, default the SPIFFE
mount) with ca.crt, tls.crt and tls.key. Without certificates the client
refuses to start unless plaintext was explicitly allowed
($ALLOW_INSECURE_GRPC=true or a flag) — a silent fallback would send BMC
commands unauthenticated."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_CERT_DIR = Path("/var/run/secrets/spiffe.io")
CA_FILE = "ca.crt"
CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"

ENV_CERT_DIR = "CERTDIR"
ENV_ALLOW_INSECURE = "ALLOW_INSECURE_GRPC"


class TlsConfigError(ValueError):
    """TLS settings are missing or inconsistent; the message says how to fix it."""


@dataclass(frozen=True, repr=False)
class TlsMaterial:
    ca: bytes
    cert: bytes | None = None
    key: bytes | None = None
    # Human-readable origin for logs ("cert dir /x", "explicit files").
    source: str = ""

    @property
    def mutual(self) -> bool:
        return self.cert is not None and self.key is not None

    def __repr__(self) -> str:  # never print key material
        return f"TlsMaterial(source={self.source!r}, mutual={self.mutual})"


def env_flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TlsConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def resolve_tls(
    *,
    ca_cert: str | Path | None = None,
    tls_cert: str | Path | None = None,
    tls_key: str | Path | None = None,
    cert_dir: str | Path | None = None,
    allow_insecure: bool = False,
) -> TlsMaterial | None:
    """TLS material to use, or None for plaintext (only when allowed)."""
    if ca_cert or tls_cert or tls_key:
        if not ca_cert:
            raise TlsConfigError("a CA certificate is required when TLS files are given")
        if bool(tls_cert) != bool(tls_key):
            raise TlsConfigError("client certificate and key must be given together")
        return TlsMaterial(
            ca=_read(Path(ca_cert), "CA certificate"),
            cert=_read(Path(tls_cert), "client certificate") if tls_cert else None,
            key=_read(Path(tls_key), "client key") if tls_key else None,
            source="explicit files",
        )
    directory = Path(cert_dir) if cert_dir else DEFAULT_CERT_DIR
    names = (CA_FILE, CERT_FILE, KEY_FILE)
    present = [n for n in names if (directory / n).is_file()]
    if len(present) == len(names):
        return TlsMaterial(
            ca=_read(directory / CA_FILE, "CA certificate"),
            cert=_read(directory / CERT_FILE, "client certificate"),
            key=_read(directory / KEY_FILE, "client key"),
            source=f"cert dir {directory}",
        )
    if present:
        missing = ", ".join(n for n in names if n not in present)
        raise TlsConfigError(f"incomplete TLS material in {directory}: missing {missing}")
    if allow_insecure:
        return None
    raise TlsConfigError(
        f"no TLS certificates for NICo Core: {directory} has no {', '.join(names)} "
        f"(set ${ENV_CERT_DIR} or pass certificate files); to use plaintext gRPC "
        f"for development set {ENV_ALLOW_INSECURE}=true"
    )
