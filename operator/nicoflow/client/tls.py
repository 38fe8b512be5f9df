"""Where the client's channel credentials come from.

The same sources as the server: explicit --ca-cert/--tls-cert/--tls-key (all
three, or none), else ca.crt/tls.crt/tls.key in $CERTDIR (default the SPIFFE
mount). Plaintext only when asked for (`insecure`, or ALLOW_INSECURE_GRPC=true):
a silent fallback would send inventory and power commands unauthenticated."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from nicoflow.client.errors import ClientConfigError

DEFAULT_CERT_DIR = "/var/run/secrets/spiffe.io"
CERT_FILES = ("ca.crt", "tls.crt", "tls.key")


@dataclass(frozen=True)
class TlsSettings:
    """What the user gave; `resolve` turns it into material or plaintext."""

    ca_cert: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    cert_dir: str | None = None
    server_name: str | None = None
    insecure: bool = False


@dataclass(frozen=True, repr=False)
class TlsMaterial:
    ca: bytes
    cert: bytes
    key: bytes
    source: str
    server_name: str | None = None

    def __repr__(self) -> str:  # keys stay out of logs and tracebacks
        return f"TlsMaterial(source={self.source!r}, server_name={self.server_name!r})"


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ClientConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def resolve(settings: TlsSettings, env: Mapping[str, str] | None = None) -> TlsMaterial | None:
    """TLS material for the channel, or None for plaintext."""
    env = os.environ if env is None else env
    given = [settings.ca_cert, settings.tls_cert, settings.tls_key]
    if any(given):
        if settings.insecure:
            raise ClientConfigError("--insecure cannot be combined with certificate files")
        if not all(given):
            raise ClientConfigError(
                "give all three of --ca-cert, --tls-cert and --tls-key, or none of them"
            )
        return TlsMaterial(
            ca=_read(Path(str(settings.ca_cert)), "CA certificate"),
            cert=_read(Path(str(settings.tls_cert)), "client certificate"),
            key=_read(Path(str(settings.tls_key)), "client key"),
            source="certificate files",
            server_name=settings.server_name,
        )
    if settings.insecure:
        return None
    directory = Path(settings.cert_dir or env.get("CERTDIR") or DEFAULT_CERT_DIR)
    present = [n for n in CERT_FILES if (directory / n).is_file()]
    if len(present) == len(CERT_FILES):
        ca, cert, key = (_read(directory / n, n) for n in CERT_FILES)
        return TlsMaterial(ca, cert, key, f"cert dir {directory}", settings.server_name)
    if present:
        missing = ", ".join(n for n in CERT_FILES if n not in present)
        raise ClientConfigError(f"incomplete certificates in {directory}: missing {missing}")
    if _flag(env.get("ALLOW_INSECURE_GRPC")):
        return None
    raise ClientConfigError(
        f"no client certificates: pass --ca-cert, --tls-cert and --tls-key, or put "
        f"{', '.join(CERT_FILES)} in $CERTDIR (now {directory}); for a plaintext "
        "development server use --insecure (or ALLOW_INSECURE_GRPC=true)"
    )
