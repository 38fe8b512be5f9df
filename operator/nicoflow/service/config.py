"""How `flow serve` may run: deployment environment, TLS material, dev mode.

Rules (as the original): FLOW_ENV is development, staging or production and
defaults to development. Certificates come from explicit --ca-cert/--tls-cert/
--tls-key (all three or none) or from $CERTDIR (default the SPIFFE mount) with
ca.crt, tls.crt and tls.key; with them clients must present a certificate
signed by that CA (mTLS). Without certificates the server runs in plaintext
in development only (ALLOW_INSECURE_GRPC=true there marks it as intended in
the startup warning); staging and production refuse to start, whatever
ALLOW_INSECURE_GRPC says. They also refuse --dev-mode (reflection, debug logs)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CERT_DIR = Path("/var/run/secrets/spiffe.io")
CA_FILE, CERT_FILE, KEY_FILE = "ca.crt", "tls.crt", "tls.key"
ENVIRONMENTS = ("development", "staging", "production")
_STRICT = ("staging", "production")


class ServeConfigError(ValueError):
    """The server cannot start as configured; the message says what to change."""


@dataclass(frozen=True, repr=False)
class ServerTls:
    ca: bytes
    cert: bytes
    key: bytes
    source: str

    def __repr__(self) -> str:  # never print key material
        return f"ServerTls(source={self.source!r})"


@dataclass(frozen=True)
class SecurityPlan:
    environment: str
    tls: ServerTls | None
    warnings: tuple[str, ...] = ()


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def environment(env: Mapping[str, str]) -> str:
    value = (env.get("FLOW_ENV") or "development").strip().lower()
    if value not in ENVIRONMENTS:
        raise ServeConfigError(
            f"FLOW_ENV is {value!r}; set it to one of {', '.join(ENVIRONMENTS)} (or leave it "
            "unset for development)"
        )
    return value


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ServeConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def server_tls(
    *,
    ca_cert: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    env: Mapping[str, str],
) -> ServerTls | None:
    given = {"--ca-cert": ca_cert, "--tls-cert": tls_cert, "--tls-key": tls_key}
    if any(given.values()):
        missing = [flag for flag, value in given.items() if not value]
        if missing:
            raise ServeConfigError(
                f"give all three of --ca-cert, --tls-cert and --tls-key, or none; missing: "
                f"{', '.join(missing)}"
            )
        assert ca_cert
        assert tls_cert
        assert tls_key
        return ServerTls(
            ca=_read(Path(ca_cert), "CA certificate"),
            cert=_read(Path(tls_cert), "server certificate"),
            key=_read(Path(tls_key), "server key"),
            source="explicit files",
        )
    explicit_dir = env.get("CERTDIR")
    directory = Path(explicit_dir) if explicit_dir else DEFAULT_CERT_DIR
    files = [directory / n for n in (CA_FILE, CERT_FILE, KEY_FILE)]
    present = [f for f in files if f.is_file()]
    if len(present) == len(files):
        return ServerTls(
            ca=_read(files[0], "CA certificate"),
            cert=_read(files[1], "server certificate"),
            key=_read(files[2], "server key"),
            source=f"cert dir {directory}",
        )
    if present or explicit_dir:
        absent = ", ".join(f.name for f in files if f not in present)
        raise ServeConfigError(
            f"certificate directory {directory} lacks {absent}; it needs {CA_FILE}, "
            f"{CERT_FILE} and {KEY_FILE}"
        )
    return None


def plan(
    *,
    dev_mode: bool,
    ca_cert: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    env: Mapping[str, str],
) -> SecurityPlan:
    """Decide TLS and check the environment's rules; ServeConfigError when refused."""
    flow_env = environment(env)
    if dev_mode and flow_env in _STRICT:
        raise ServeConfigError(
            f"--dev-mode is not allowed with FLOW_ENV={flow_env}: it turns on reflection and "
            "debug logs; drop the flag or use FLOW_ENV=development"
        )
    tls = server_tls(ca_cert=ca_cert, tls_cert=tls_cert, tls_key=tls_key, env=env)
    if tls is not None:
        return SecurityPlan(flow_env, tls)
    if flow_env in _STRICT:
        raise ServeConfigError(
            f"FLOW_ENV={flow_env} requires mTLS certificates: pass --ca-cert, --tls-cert and "
            f"--tls-key, or mount {CA_FILE}, {CERT_FILE} and {KEY_FILE} in $CERTDIR "
            f"(default {DEFAULT_CERT_DIR})"
        )
    if _flag(env.get("ALLOW_INSECURE_GRPC")):
        return SecurityPlan(flow_env, None, ("serving plaintext gRPC (ALLOW_INSECURE_GRPC=true)",))
    return SecurityPlan(
        flow_env,
        None,
        ("no certificates found: serving plaintext gRPC because FLOW_ENV=development",),
    )
