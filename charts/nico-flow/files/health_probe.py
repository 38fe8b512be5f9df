"""Ask a gRPC server's health service whether it is SERVING; exit 0 if so.

Used by the API's readiness and liveness probes when the API serves mTLS (the
kubelet's own gRPC probe speaks plaintext only) and by `helm test`. With
--cert-dir the call presents tls.crt/tls.key and trusts ca.crt from it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("target", help="host:port")
    parser.add_argument("--service", default="", help="service name; empty: the whole server")
    parser.add_argument("--cert-dir", help="directory with ca.crt, tls.crt and tls.key")
    parser.add_argument("--server-name", help="TLS name to verify instead of the host")
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()

    if args.cert_dir:
        d = Path(args.cert_dir)
        creds = grpc.ssl_channel_credentials(
            root_certificates=(d / "ca.crt").read_bytes(),
            private_key=(d / "tls.key").read_bytes(),
            certificate_chain=(d / "tls.crt").read_bytes(),
        )
        options = [("grpc.ssl_target_name_override", args.server_name)] if args.server_name else []
        channel = grpc.secure_channel(args.target, creds, options=options)
    else:
        channel = grpc.insecure_channel(args.target)
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.RpcError as exc:
            print(f"{args.target}: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"{args.target}: {status}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
