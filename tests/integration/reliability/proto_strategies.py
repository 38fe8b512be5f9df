"""Hypothesis strategies for any protobuf message, built by walking its
descriptor — one builder for every request of an API, none written by hand.

A hostile builder draws unicode with NUL and control characters, right-to-left
marks and emoji, very long strings, strings that mean something to SQL, shells
or label selectors, unknown enum numbers, the extremes of every integer type,
NaN and infinities, empty and oversized lists, timestamps far outside any
calendar. A plausible one (`plausible=True`) draws what a careless but honest
client sends — mostly `known` strings (ids, names, serial numbers that exist
on the server), defined enum values, small numbers, sane times — so requests
also get past validation into lookups, writes and conflicts."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

F = FieldDescriptor

_I32 = (-(2**31), 2**31 - 1)
_I64 = (-(2**63), 2**63 - 1)
_U32 = (0, 2**32 - 1)
_U64 = (0, 2**64 - 1)
INT_RANGES: dict[int, tuple[int, int]] = {
    F.TYPE_INT32: _I32,
    F.TYPE_SINT32: _I32,
    F.TYPE_SFIXED32: _I32,
    F.TYPE_INT64: _I64,
    F.TYPE_SINT64: _I64,
    F.TYPE_SFIXED64: _I64,
    F.TYPE_UINT32: _U32,
    F.TYPE_FIXED32: _U32,
    F.TYPE_UINT64: _U64,
    F.TYPE_FIXED64: _U64,
}

# Strings that mean something to one of the layers a request passes through.
NASTY = (
    "",
    " ",
    "\x00",
    "a\x00b",
    "\t\n\r",
    "'; DROP TABLE rack; --",
    "%",
    "_",
    "%%",
    "\\",
    "*",
    "..",
    "../../etc/passwd",
    "$(id)",
    "${HOME}",
    "null",
    "None",
    "true",
    "-1",
    "0",
    "1e309",
    "NaN",
    "9" * 40,
    "00000000-0000-0000-0000-000000000000",
    "{00000000-0000-0000-0000-000000000000}",
    "urn:uuid:00000000-0000-0000-0000-000000000000",
    "a,b=c",
    "app in (a,b)",
    "!x",
    "flow.nico.io/rack",
    "A" * 64,
    "a" * 253,
    "a" * 254,
    "\u202eevil",
    "\ufeff",
    "😀",
    "Ω≈ç√",
    "<script>",
    '{"a": 1}',
    "[]",
    "ASC",
    "desc",
    "1h",
    "-5m",
    "*/5 * * * *",
    "61 25 * * *",
    "Europe/Paris",
    "Mars/Olympus",
    "2026-02-30T00:00:00Z",
)


def _long_strings() -> st.SearchStrategy[str]:
    # past PostgreSQL's limit for an index entry (about 2.7 kB), and far past
    # any name Kubernetes accepts
    unit = st.sampled_from(["a", "-", "é", "\x00", "😀", "ab0-"])
    return st.builds(lambda u, n: u * n, unit, st.integers(256, 12_000))


def text(known: Sequence[str] = (), *, long: bool = True) -> st.SearchStrategy[str]:
    """Any valid (UTF-8 encodable) string, often a hostile one."""
    options = [
        st.text(st.characters(codec="utf-8"), max_size=40),
        st.text(st.characters(min_codepoint=0, max_codepoint=0x7F), max_size=24),
        st.sampled_from(NASTY),
        st.uuids().map(str),
    ]
    if long:
        options.append(_long_strings())
    if known:
        options.insert(0, st.sampled_from(_unique(known)))
    return st.one_of(*options)


def integers(ftype: int) -> st.SearchStrategy[int]:
    lo, hi = INT_RANGES[ftype]
    edges = sorted({v for v in (lo, hi, -1, 0, 1, 2, 100, 101, 1000) if lo <= v <= hi})
    return st.one_of(st.sampled_from(edges), st.integers(-5, 200).filter(lambda v: lo <= v <= hi),
                     st.integers(lo, hi))  # fmt: skip


def plausible_text(known: Sequence[str], *, id_like: bool = False) -> st.SearchStrategy[str]:
    """Mostly a known string; for a field named like an id, mostly a known UUID."""
    plain = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
    uuids, names = [], []
    for k in _unique(known):
        (uuids if _is_uuid(k) else names).append(k)
    pool = (uuids if id_like else names) or names or uuids
    if not pool:
        return st.one_of(st.just(""), plain, st.uuids().map(str))
    sample = st.sampled_from(pool)
    other = st.uuids().map(str) if id_like else plain
    return st.one_of(sample, sample, sample, other, st.just(""))


def _unique(known: Sequence[str]) -> list[str]:
    """In the order given: a draw picks the same role (first rack's id, ...)
    from run to run even when the server made up the values anew."""
    return list(dict.fromkeys(known))


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


# Well-known types a plausible client fills in sensibly.
_SANE = {
    "google.protobuf.Timestamp": lambda: st.builds(
        lambda s, n: {"seconds": s, "nanos": n},
        st.integers(1_700_000_000, 1_900_000_000),
        st.integers(0, 999_999_999),
    ),
    "google.protobuf.Duration": lambda: st.builds(
        lambda s: {"seconds": s, "nanos": 0}, st.integers(0, 7 * 86400)
    ),
}


@dataclass
class Builder:
    """Strategies for the messages of one API, sharing the `known` strings."""

    known: Sequence[str] = ()
    plausible: bool = False
    max_depth: int = 4
    # lists: usually short, sometimes far longer than any caller sends
    max_list: int = 4
    oversized: tuple[int, int] = (64, 2_000)
    # the elements of an oversized list: flat and short, so one request
    # stays within a few megabytes however the draws fall
    small: bool = False
    _cache: dict[tuple[str, int], st.SearchStrategy[Message]] = field(default_factory=dict)
    _small: Builder | None = None

    def message(self, desc: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
        if self.small:
            depth = max(depth, self.max_depth)
        key = (desc.full_name, depth)
        if key not in self._cache:
            self._cache[key] = st.deferred(lambda: self._message(desc, depth))
        return self._cache[key]

    def _element(self, f: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
        if self._small is None:
            self._small = Builder(self.known, max_depth=self.max_depth, small=True)
        return self._small.single(f, depth)

    def _message(self, desc: Descriptor, depth: int) -> st.SearchStrategy[Message]:
        cls = message_factory.GetMessageClass(desc)
        if self.plausible and desc.full_name in _SANE:
            return _SANE[desc.full_name]().map(lambda kw: cls(**kw))
        oneofs = [o for o in desc.oneofs if not _synthetic(o)]
        fields = [f for f in desc.fields if not _in_real_oneof(f)]
        if depth >= self.max_depth:
            fields = [f for f in fields if f.type != F.TYPE_MESSAGE]
            oneofs = []
        per_field = [(f, self._presence(f), self.field(f, depth)) for f in fields]
        per_oneof = [
            st.one_of(
                *([] if self.plausible else [st.none()]),
                *[st.tuples(st.just(f.name), self.single(f, depth)) for f in o.fields],
            )
            for o in oneofs
        ]

        @st.composite
        def build(draw: st.DrawFn) -> Message:
            msg = cls()
            for f, present, value in per_field:
                if draw(present):
                    _assign(msg, f, draw(value))
            for choice in draw(st.tuples(*per_oneof)):
                if choice is not None:
                    _assign(msg, desc.fields_by_name[choice[0]], choice[1])
            return msg

        return build()

    def field(self, f: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
        if f.type == F.TYPE_MESSAGE and f.message_type.GetOptions().map_entry:
            key = self.single(f.message_type.fields_by_name["key"], depth + 1)
            value = self.single(f.message_type.fields_by_name["value"], depth + 1)
            return st.dictionaries(key, value, max_size=self.max_list)
        one = self.single(f, depth)
        if not f.is_repeated:
            return one
        if self.small:
            return st.lists(one, max_size=2)
        if self.plausible:
            return st.lists(one, min_size=1, max_size=3)
        lo, hi = self.oversized
        return st.one_of(
            st.lists(one, max_size=self.max_list),
            # one element copied many times: cheap to draw, large on the wire
            st.builds(lambda v, n: [v] * n, self._element(f, depth), st.integers(lo, hi)),
        )

    def single(self, f: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
        t = f.type
        if t == F.TYPE_MESSAGE:
            return self.message(f.message_type, depth + 1)
        if self.plausible:
            return self._plausible(f)
        if t == F.TYPE_STRING:
            return text(self.known, long=not self.small)
        if t == F.TYPE_BYTES:
            return st.binary(max_size=64)
        if t == F.TYPE_BOOL:
            return st.booleans()
        if t == F.TYPE_ENUM:
            numbers = [v.number for v in f.enum_type.values]
            # proto3 enums are open: an unknown number reaches the server as is
            return st.one_of(st.sampled_from(numbers), st.integers(*_I32))
        if t == F.TYPE_DOUBLE:
            return st.floats()
        if t == F.TYPE_FLOAT:
            return st.floats(width=32)
        return integers(t)

    def _presence(self, f: FieldDescriptor) -> st.SearchStrategy[bool]:
        """Whether a field is set: a coin toss, except that a plausible client
        mostly fills in the sub-messages and lists a request is built from."""
        if self.plausible:
            return st.integers(0, 4 if f.type == F.TYPE_MESSAGE or f.is_repeated else 3).map(bool)
        return st.booleans()

    def _plausible(self, f: FieldDescriptor) -> st.SearchStrategy[Any]:
        t = f.type
        if t == F.TYPE_STRING:
            return plausible_text(self.known, id_like=f.name == "id" or f.name.endswith("_id"))
        if t == F.TYPE_BYTES:
            return st.binary(max_size=8)
        if t == F.TYPE_BOOL:
            return st.booleans()
        if t == F.TYPE_ENUM:
            # the zero value is usually UNSPECIFIED: a careless client leaves
            # it now and then, an honest one names a real value
            values = [v.number for v in f.enum_type.values]
            named = st.sampled_from([v for v in values if v] or values)
            return st.one_of(named, named, st.sampled_from(values))
        if t in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
            return st.floats(0, 100)
        return st.integers(0, 100)


def _synthetic(oneof: Any) -> bool:
    """proto3 `optional` wraps its field in a one-member oneof named `_field`."""
    return len(oneof.fields) == 1 and oneof.name == f"_{oneof.fields[0].name}"


def _in_real_oneof(f: FieldDescriptor) -> bool:
    return f.containing_oneof is not None and not _synthetic(f.containing_oneof)


def _assign(msg: Message, f: FieldDescriptor, value: Any) -> None:
    if f.type == F.TYPE_MESSAGE and f.message_type.GetOptions().map_entry:
        target = getattr(msg, f.name)
        for k, v in value.items():
            if isinstance(v, Message):
                target[k].CopyFrom(v)
            else:
                target[k] = v
    elif f.is_repeated:
        getattr(msg, f.name).extend(value)
    elif f.type == F.TYPE_MESSAGE:
        getattr(msg, f.name).CopyFrom(value)
    else:
        setattr(msg, f.name, value)


def wire_bytes(known: Sequence[str], desc: Descriptor) -> st.SearchStrategy[bytes]:
    """What clients put on the wire for a request of type `desc`: a plausible
    message (most often, so calls reach past validation), a hostile one,
    random bytes, or a plausible message with bytes flipped and appended."""
    plausible = Builder(known, plausible=True).message(desc).map(_encode)
    hostile = Builder(known).message(desc).map(_encode)
    return st.one_of(
        plausible,
        hostile,
        plausible,
        plausible,
        st.binary(max_size=256),
        st.builds(_mutate, plausible, _flips, st.binary(max_size=8)),
    )


def _encode(message: Message) -> bytes:
    return message.SerializeToString()


_flips = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4)


def _mutate(data: bytes, flips: list[tuple[int, int]], tail: bytes) -> bytes:
    buf = bytearray(data)
    for pos, value in flips:
        if buf:
            buf[pos % len(buf)] = value
    return bytes(buf) + tail
