"""Build frozen dataclasses from parsed YAML, checking types, ranges and choices, naming the key path on error.

Each config dataclass field carries its documentation and limits in `field(metadata=...)` through
`option()`, so validation, defaults and docs/config.md come from one place. Works on Python 3.6
(typing's `__origin__` differs between 3.6 and 3.7+, handled below).
"""

import difflib
import math
import typing
from dataclasses import MISSING, field, fields, is_dataclass
from typing import Any

from .errors import ConfigError


def option(default=MISSING, doc="", minimum=None, maximum=None, choices=None, factory=MISSING, example=None):
    """A config field: its default, one line of documentation, and the limits a value must keep."""
    meta = {"doc": doc, "min": minimum, "max": maximum, "choices": choices, "example": example}
    if factory is not MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _origin(tp):
    return getattr(tp, "__origin__", None)


def is_optional(tp):
    return _origin(tp) is typing.Union and type(None) in tp.__args__


def _inner_optional(tp):
    return [a for a in tp.__args__ if a is not type(None)][0]


def is_tuple_of(tp):
    return _origin(tp) in (tuple, typing.Tuple)


def is_dict_of(tp):
    return _origin(tp) in (dict, typing.Dict)


def type_name(tp):
    """A user-facing name for an annotation, as used in errors and docs."""
    if is_optional(tp):
        return type_name(_inner_optional(tp)) + " or null"
    if is_tuple_of(tp):
        return "list of " + type_name(tp.__args__[0])
    if is_dict_of(tp):
        return "mapping of %s to %s" % (type_name(tp.__args__[0]), type_name(tp.__args__[1]))
    if is_dataclass(tp):
        return "mapping"
    return {int: "integer", float: "number", bool: "boolean", str: "string"}.get(tp, getattr(tp, "__name__", str(tp)))


def describe(value):
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    return "%r (%s)" % (value, type_name(type(value)))


def join_path(path, key):
    if isinstance(key, int) and not isinstance(key, bool):
        return "%s[%d]" % (path, key)
    return "%s.%s" % (path, key) if path else str(key)


def _check_scalar(tp, value, path):
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                # .nan passes every range check (each comparison is false) and .inf is no setting anyone means
                raise ConfigError("%s: expected a finite number, got %r" % (path, value))
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is Any:
        return value
    raise ConfigError("%s: expected %s, got %s" % (path, type_name(tp), describe(value)))


def _check_limits(meta, value, path, shown=None):
    shown = value if shown is None else shown
    choices = meta.get("choices")
    if choices and value not in choices:
        hint = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        raise ConfigError("%s: %r is not one of %s%s" % (
            path, shown, ", ".join(str(c) for c in choices), "; did you mean %r?" % hint[0] if hint else ""))
    low, high = meta.get("min"), meta.get("max")
    if low is not None and value < low or high is not None and value > high:
        raise ConfigError("%s: %r is out of range [%s, %s]" % (
            path, shown, "-inf" if low is None else low, "inf" if high is None else high))


def build_value(tp, value, path, meta=None):
    """Check `value` against annotation `tp` and convert it (lists to tuples, mappings to dataclasses)."""
    meta = meta or {}
    if is_optional(tp):
        return None if value is None else build_value(_inner_optional(tp), value, path, meta)
    if is_dataclass(tp):
        return build_dataclass(tp, value, path)
    if is_tuple_of(tp):
        if value is None:   # a list key left empty (`webhooks:` with nothing under it) is an empty list
            return ()
        if not isinstance(value, list):
            raise ConfigError("%s: expected a list, got %s" % (path, describe(value)))
        return tuple(build_value(tp.__args__[0], v, join_path(path, i), meta) for i, v in enumerate(value))
    if is_dict_of(tp):
        if not isinstance(value, dict):
            raise ConfigError("%s: expected a mapping, got %s" % (path, describe(value)))
        return {build_value(tp.__args__[0], k, join_path(path, k)): build_value(tp.__args__[1], v, join_path(path, k))
                for k, v in value.items()}
    checked = _check_scalar(tp, value, path)
    _check_limits(meta, checked, path, shown=value)
    return checked


def build_dataclass(cls, raw, path=""):
    """Build `cls` from a mapping; unknown keys get a 'did you mean'; `cls.coerce(raw)` may expand shorthands."""
    coerce = getattr(cls, "coerce", None)
    if coerce is not None:
        raw = coerce(raw, path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("%s: expected a mapping, got %s" % (path or "(top level)", describe(raw)))
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    for key in raw:
        if key not in known:
            hint = difflib.get_close_matches(str(key), list(known), n=1)
            raise ConfigError("%s: unknown key%s; allowed: %s" % (
                join_path(path, key), " (did you mean %r?)" % hint[0] if hint else "", ", ".join(sorted(known))))
    values = {}
    for name, f in known.items():
        if name in raw:
            values[name] = build_value(hints[name], raw[name], join_path(path, name), f.metadata)
        elif f.default is MISSING and f.default_factory is MISSING:
            raise ConfigError("%s: required key is missing" % join_path(path, name))
    instance = cls(**values)
    check = getattr(instance, "check", None)
    if check is not None:
        check(path)
    return instance


def document(cls, prefix="", defaults=None):
    # type: (type, str, Any) -> List[Dict[str, str]]
    """Rows (key, type, default, doc) for every field of `cls` and its nested dataclasses, for docs/config.md.

    `defaults` is the instance the enclosing field's factory builds, when there is one: a nested section's
    defaults are that instance's values (smoke's raise_frames is 4 where ThresholdConfig's own is 3)."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        tp = hints[f.name]
        key = join_path(prefix, f.name)
        inner = tp.__args__[0] if is_tuple_of(tp) else (_inner_optional(tp) if is_optional(tp) else tp)
        if defaults is not None:
            default = getattr(defaults, f.name)
        elif f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        else:
            default = "(required)"
        nested_defaults = default if is_dataclass(default) else None
        if is_dataclass(default):
            default = "(see below)"
        meta = f.metadata
        limits = []
        if meta.get("choices"):
            limits.append("one of " + ", ".join("`%s`" % c for c in meta["choices"]))
        if meta.get("min") is not None or meta.get("max") is not None:
            limits.append("range [%s, %s]" % (meta.get("min", "") if meta.get("min") is not None else "",
                                               meta.get("max") if meta.get("max") is not None else ""))
        rows.append({"key": key, "type": type_name(tp), "default": default, "doc": meta.get("doc", ""),
                     "limits": "; ".join(limits)})
        if is_dataclass(inner):
            rows.extend(document(inner, key + ("[]" if is_tuple_of(tp) else ""), nested_defaults))
    return rows
