"""Typed Python client of the Flow API (v1.Flow), used by the `flow` client commands."""

from nicoflow.client.client import ComponentInfo, FlowClient, Page, QueueOptions
from nicoflow.client.errors import ClientConfigError, FlowError
from nicoflow.client.targets import TargetError, component_targets, rack_targets, target_spec
from nicoflow.client.tls import TlsSettings

__all__ = [
    "ClientConfigError",
    "ComponentInfo",
    "FlowClient",
    "FlowError",
    "Page",
    "QueueOptions",
    "TargetError",
    "TlsSettings",
    "component_targets",
    "rack_targets",
    "target_spec",
]
