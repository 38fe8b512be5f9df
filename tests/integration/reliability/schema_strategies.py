"""Hypothesis strategies for JSON values of a Kubernetes structural schema
(the openAPIV3Schema of our CRDs), built by walking the schema.

`valid=True` draws values that satisfy every keyword the schema states
(type, enum, pattern, lengths, bounds, required, list types); CEL rules are
left to chance, so some still fail them. `valid=False` breaks the schema here
and there: wrong JSON types, values out of bounds or off pattern, unknown
enum values, missing required fields, lists past their maximum."""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hypothesis import strategies as st

Schema = Mapping[str, Any]

_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
)
_ANY_JSON = st.recursive(
    _SCALARS | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
_LABEL_PART = r"[a-z0-9]([a-z0-9.-]{0,12}[a-z0-9])?"
_LABEL_KEY = st.from_regex(rf"{_LABEL_PART}(/{_LABEL_PART})?", fullmatch=True)
_PLAIN = string.ascii_lowercase + string.digits + "-_./ "
_MAX_LIST = 4
_MAX_DEPTH = 8


def _timestamps() -> st.SearchStrategy[str]:
    when = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1))
    return when.map(lambda d: d.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ"))


@dataclass(frozen=True)
class SchemaStrategies:
    valid: bool = True

    def value(self, node: Schema, depth: int = 0) -> st.SearchStrategy[Any]:
        good = self._conforming(node, depth)
        if self.valid:
            return good
        # mostly conforming, so a draw carries a few faults rather than only faults
        return st.one_of(good, good, good, self._breaking(node))

    # -- values the schema allows ----------------------------------------------------------

    def _conforming(self, node: Schema, depth: int) -> st.SearchStrategy[Any]:
        if "enum" in node:
            return st.sampled_from(list(node["enum"]))
        if node.get("x-kubernetes-int-or-string"):
            return st.one_of(st.integers(0, 1000), st.from_regex(r"[0-9]{1,3}%", fullmatch=True))
        kind = node.get("type")
        if kind == "object" or "properties" in node:
            return self._object(node, depth)
        if kind == "array":
            return self._array(node, depth)
        if kind == "string":
            return self._string(node)
        if kind == "integer":
            return st.integers(node.get("minimum", -(2**31)), node.get("maximum", 2**31))
        if kind == "number":
            return st.floats(
                node.get("minimum"), node.get("maximum"), allow_nan=False, allow_infinity=False
            )
        if kind == "boolean":
            return st.booleans()
        return _ANY_JSON

    def _string(self, node: Schema) -> st.SearchStrategy[str]:
        lo, hi = node.get("minLength", 0), node.get("maxLength", 64)
        if node.get("format") == "date-time":
            return _timestamps()
        if "pattern" in node:
            pattern = node["pattern"]
            drawn = st.from_regex(pattern, fullmatch=True)
            return drawn.filter(lambda s: lo <= len(s) <= hi)
        alphabet = st.characters(codec="utf-8", exclude_categories=("Cs",))
        return st.one_of(
            st.text(_PLAIN, min_size=lo, max_size=min(hi, 40)),
            st.text(alphabet, min_size=lo, max_size=min(hi, 20)),
        )

    def _array(self, node: Schema, depth: int) -> st.SearchStrategy[list[Any]]:
        item = node.get("items") or {}
        if depth >= _MAX_DEPTH:
            return st.just([]) if node.get("minItems", 0) == 0 else st.nothing()
        lo = node.get("minItems", 0)
        # a conforming draw keeps lists short: each element is one more
        # chance to trip a CEL rule the draw knows nothing of
        most = 2 if self.valid else _MAX_LIST
        hi = max(lo, min(node.get("maxItems", most), most))
        elements = self.value(item, depth + 1)
        list_type = node.get("x-kubernetes-list-type")
        keys = node.get("x-kubernetes-list-map-keys")
        if list_type == "set":
            return st.lists(elements, min_size=lo, max_size=hi, unique_by=_freeze)
        if list_type == "map" and keys:
            return st.lists(elements, min_size=lo, max_size=hi, unique_by=_keyed(keys))
        return st.lists(elements, min_size=lo, max_size=hi)

    def _object(self, node: Schema, depth: int) -> st.SearchStrategy[dict[str, Any]]:
        props: Mapping[str, Schema] = node.get("properties") or {}
        extra = node.get("additionalProperties")
        if not props and isinstance(extra, Mapping):
            hi = min(node.get("maxProperties", _MAX_LIST), _MAX_LIST)
            return st.dictionaries(_LABEL_KEY, self.value(extra, depth + 1), max_size=hi)
        if node.get("x-kubernetes-preserve-unknown-fields") and not props:
            return st.dictionaries(st.text(max_size=8), _ANY_JSON, max_size=3)
        required = set(node.get("required") or ())
        if depth >= _MAX_DEPTH:
            props = {k: v for k, v in props.items() if k in required}
        parts = {k: self.value(v, depth + 1) for k, v in props.items()}
        shape = _Shape.of(node) if self.valid else _Shape()
        built = _shaped(parts, required, shape, sparse=self.valid)
        if self.valid or not required:
            return built
        # sometimes a required field goes missing
        return st.one_of(
            built,
            st.tuples(built, st.sampled_from(sorted(required))).map(
                lambda t: {k: v for k, v in t[0].items() if k != t[1]}
            ),
        )

    # -- values it does not ------------------------------------------------------------------

    def _breaking(self, node: Schema) -> st.SearchStrategy[Any]:
        kind = node.get("type")
        options: list[st.SearchStrategy[Any]] = [_ANY_JSON]
        if "enum" in node:
            options.append(st.text(max_size=12).filter(lambda s: s not in node["enum"]))
        if kind == "string":
            if "maxLength" in node:
                n = int(node["maxLength"]) + 1
                options.append(st.sampled_from(["a", "0", "-", "é"]).map(lambda c: c * n))
            if "pattern" in node or "format" in node:
                options.append(st.text(max_size=20))
        if kind == "integer":
            if "maximum" in node:
                options.append(st.integers(node["maximum"] + 1, node["maximum"] + 10**12))
            if "minimum" in node:
                options.append(st.integers(node["minimum"] - 10**12, node["minimum"] - 1))
            options.append(st.sampled_from([2**63, -(2**63) - 1, 1.5]))
        if kind == "array" and "maxItems" in node:
            n = int(node["maxItems"]) + 1
            item = self._conforming(node.get("items") or {}, _MAX_DEPTH)
            options.append(item.map(lambda v: [v] * n))
        return st.one_of(*options)


# CEL rules of a few common shapes, which random presence rarely satisfies:
# "exactly one of these fields", "at least one of these", "X only with Y".
_HAS = re.compile(r"has\(self\.(\w+)\)")
_EXACTLY_ONE = re.compile(r"^\[(has\(self\.\w+\)(,\s*)?)+\]\.filter\(x,\s*x\)\.size\(\) == 1$")
_IMPLIES = re.compile(r"^!has\(self\.(\w+)\) \|\| has\(self\.(\w+)\)$")


@dataclass(frozen=True)
class _Shape:
    exactly_one: tuple[tuple[str, ...], ...] = ()
    at_least_one: tuple[tuple[str, ...], ...] = ()
    implies: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, node: Schema) -> _Shape:
        one, some, implies = [], [], []
        for v in node.get("x-kubernetes-validations") or ():
            rule = " ".join(str(v.get("rule", "")).split())
            if _EXACTLY_ONE.match(rule):
                one.append(tuple(_HAS.findall(rule)))
            elif m := _IMPLIES.match(rule):
                implies.append((m.group(1), m.group(2)))
            elif rule.startswith(("has(self.", "(has(self.")) and "!" not in rule and "||" in rule:
                some.append(tuple(_HAS.findall(rule)))
        return cls(tuple(one), tuple(some), tuple(implies))


def _shaped(
    parts: Mapping[str, st.SearchStrategy[Any]], required: set[str], shape: _Shape, sparse: bool
) -> st.SearchStrategy[dict[str, Any]]:
    # optional fields: a coin toss, or one chance in three when sparse
    optional = st.integers(0, 2).map(lambda n: n == 2) if sparse else st.booleans()

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        picks = {draw(st.sampled_from([f for f in g if f in parts])) for g in shape.exactly_one}
        grouped = {f for g in shape.exactly_one for f in g}
        out: dict[str, Any] = {}
        for name, part in parts.items():
            wanted = name in required or name in picks
            if wanted or (name not in grouped and draw(optional)):
                out[name] = draw(part)
        for group in shape.at_least_one:
            present = [f for f in group if f in parts]
            if present and not any(f in out for f in present):
                name = draw(st.sampled_from(present))
                out[name] = draw(parts[name])
        for x, y in shape.implies:
            if x in out and y not in out:
                del out[x]
        return out

    return build()


def _keyed(keys: list[str]) -> Any:
    def key(value: Any) -> Any:
        if isinstance(value, dict):
            return tuple(_freeze(value.get(k)) for k in keys)
        return _freeze(value)

    return key


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value
