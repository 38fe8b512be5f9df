"""Kubernetes names for the names the original's clients use.

The v1 API took any text as the name of a rack, a component or an NVL domain
("R1", "GPU Tray 1", "NVL Wire 3"); Kubernetes names are DNS labels. A name
that is a DNS label is used as it is. Any other becomes a DNS-label spelling
of it followed by a short hash of the exact text (and, for components whose
name repeats within a rack, of the serial number), so different names never
share an object name and the same name always gets the same one. The text
the client gave is kept beside it as the display name."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence

MAX = 63
MAX_DISPLAY = 255
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_NOT_LABEL = re.compile(r"[^a-z0-9-]+")
_HASH = 6


def is_dns_label(text: str) -> bool:
    return len(text) <= MAX and bool(_DNS_LABEL.match(text))


def object_name(text: str, salt: str = "") -> str:
    """The object name for `text`: itself when it is a DNS label (and no salt
    is asked for), else its DNS-label spelling with a hash of text and salt."""
    if not salt and is_dns_label(text):
        return text
    digest = hashlib.sha256(f"{text}\0{salt}".encode()).hexdigest()[:_HASH]
    base = _NOT_LABEL.sub("-", text.lower()).strip("-")[: MAX - _HASH - 1].rstrip("-")
    return f"{base}-{digest}" if base else f"n-{digest}"


def display_name(text: str, obj: str) -> str | None:
    """What to keep as the display name: None when the object name says it."""
    return None if text == obj else text


def problem(text: str, field: str) -> str | None:
    """Why `text` cannot be a name at all (empty, too long, control characters)."""
    if not text.strip():
        return f"{field} is empty; give a name"
    if len(text) > MAX_DISPLAY:
        return f"{field} is {len(text)} characters long; at most {MAX_DISPLAY}"
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return f"{field} contains control characters"
    return None


def component_names(wanted: Sequence[tuple[str, str]], taken: Iterable[str] = ()) -> list[str]:
    """Object names for components given as (name, serial number), unique
    within the rack (`taken`: names already used there). A repeated or
    non-DNS name is told apart by its serial number."""
    used = set(taken)
    out = []
    for text, serial in wanted:
        obj = text if is_dns_label(text) and text not in used else object_name(text, serial)
        used.add(obj)
        out.append(obj)
    return out
