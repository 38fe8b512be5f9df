"""Layered firmware target versions: one version string for every type, or a
JSON object with a section per component type."""

from __future__ import annotations

import json

from nicoflow.domain.types import ComponentType

_LAYER_KEYS = {t.value for t in ComponentType}


def version_for(target_version: str, component_type: ComponentType) -> str:
    """The version a step of `component_type` sends.

    `{"compute": "1.2", "nvswitch": {"bmc": "3.4"}}` gives "1.2" to compute,
    the object as JSON to switches and "" (Core's desired version) to others."""
    text = target_version.strip()
    if not text.startswith("{"):
        return target_version
    try:
        layered = json.loads(text)
    except ValueError:
        return target_version
    if not isinstance(layered, dict) or not _LAYER_KEYS & {k.lower() for k in layered}:
        return target_version
    for key, value in layered.items():
        if key.lower() == component_type.value:
            return value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return ""
