"""YAML → frozen dataclasses, with errors that name the file, the line and the key.

Generic over any dataclass tree, so ``finetune``, ``run`` and ``collect`` share one loader and
one error style. ``key=value`` overrides (Ultralytics style) and click options go through the
same checks as YAML; an error in an option names the option as it was typed (``--top-k``).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from edgecam.errors import ConfigError

T = typing.TypeVar("T")


class _Source:
    """Where values came from: a file (with line numbers) or the command line."""

    def __init__(self, name: str, lines: dict[tuple[str, ...], int] | None = None):
        self.name = name
        self.lines = lines or {}
        self.overridden: set[tuple[str, ...]] = set()
        self.options: dict[tuple[str, ...], str] = {}  # key path -> the option that set it

    def where(self, path: tuple[str, ...]) -> str:
        if any(path[: len(p)] == p or p[: len(path)] == path for p in self.overridden):
            return "command line"
        line = self.lines.get(path)
        return f"{self.name}:{line}" if line else self.name

    def key(self, path: tuple[str, ...]) -> str:
        """How the user wrote this key: ``--top-k`` for an option, else ``a.b.c``."""
        if path in self.options and path in self.overridden:
            return self.options[path]
        return ".".join(path)

    def error(self, path: tuple[str, ...], message: str) -> ConfigError:
        return ConfigError(f"{self.where(path)}: {self.key(path)}: {message}")


def _key_lines(node: yaml.Node, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], int]:
    """Map every mapping key path in a composed YAML document to its 1-based line."""
    out: dict[tuple[str, ...], int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = prefix + (str(key_node.value),)
            out[path] = key_node.start_mark.line + 1
            out.update(_key_lines(value_node, path))
    return out


def read_yaml(path: str | Path) -> tuple[dict[str, Any], _Source]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc})") from None
    try:
        _refuse_aliases(text, path)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data, _Source(str(path), _key_lines(node) if node is not None else {})


def _refuse_aliases(text: str, path: Path) -> None:
    """Aliases (``*name``) can expand exponentially ("billion laughs"); configs never need them."""
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            raise ConfigError(f"{path}:{event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are not "
                              "allowed in config files; write the value out")


def parse_overrides(pairs: typing.Iterable[str]) -> dict[str, Any]:
    """``["train.epochs=5", "name=x"]`` → nested dict; values are parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"command line: {pair!r}: expected key=value (e.g. train.epochs=5)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"command line: {key}: conflicts with an earlier override")
        node[parts[-1]] = value
    return out


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``override`` into a copy of ``base`` (mappings merge, everything else replaces)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def build(cls: type[T], data: dict[str, Any], source: _Source, prefix: tuple[str, ...] = ()) -> T:
    """Validate ``data`` against dataclass ``cls``; unknown keys and bad values are ConfigErrors."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            path = prefix + (str(key),)
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.5)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (valid keys: {', '.join(fields)})"
            raise source.error(path, f"unknown key{hint}")
    kwargs = {}
    for name, field in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], source, prefix + (name,))
    try:
        obj = cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ConfigError(f"{source.name}: {'.'.join(prefix) or 'config'}: {exc}") from None
    check = getattr(obj, "validate", None)
    if check is not None:
        problem = check()
        if problem:
            key, message = problem
            raise source.error(prefix + tuple(key.split(".")), message)
    return obj


def _convert(tp: Any, value: Any, source: _Source, path: tuple[str, ...]) -> Any:
    def fail(expected: str) -> ConfigError:
        return source.error(path, f"expected {expected}, got {value!r}")

    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise fail(f"a mapping of {tp.__name__} keys")
        return build(tp, value, source, path)
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(option, value, source, path)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[-1] if len(errors) == 1 else fail(_describe(tp))
    if origin is Literal:
        if value not in get_args(tp):
            raise fail("one of " + " | ".join(str(a) for a in get_args(tp)))
        return value
    if origin is tuple:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]  # a single value where a list is expected
        if not isinstance(value, list):
            raise fail("a list")
        (item,) = get_args(tp)[:1]
        return tuple(_convert(item, v, source, path) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise fail("a mapping")
        ktp, vtp = get_args(tp)
        return {_convert(ktp, k, source, path): _convert(vtp, v, source, path + (str(k),)) for k, v in value.items()}
    return _convert_scalar(tp, value, fail)


def _convert_scalar(tp: Any, value: Any, fail: typing.Callable[[str], ConfigError]) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail("an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail("a number")
        return float(value)
    if tp is str:
        if isinstance(value, (dict, list)) or value is None:
            raise fail("a string")
        return str(value)
    if tp is Path:
        if not isinstance(value, str) or not value:
            raise fail("a path")
        return Path(value).expanduser()
    raise TypeError(f"unsupported config type {tp!r}")  # a bug in a dataclass, not user input


def _describe(tp: Any) -> str:
    names = []
    for option in get_args(tp):
        if get_origin(option) is Literal:
            names.extend(str(a) for a in get_args(option))
        elif get_origin(option) is tuple:
            names.append("a list")
        elif get_origin(option) is dict:
            names.append("a mapping")
        elif option is not type(None):
            names.append(getattr(option, "__name__", str(option)))
    return " or ".join(names)


def load(cls: type[T], path: str | Path | None, overrides: typing.Iterable[str] = ()) -> T:
    """Load ``cls`` from a YAML file (or defaults when ``path`` is None) plus ``key=value`` overrides."""
    return load_values(cls, path, parse_overrides(overrides))


def load_values(cls: type[T], path: str | Path | None, values: dict[str, Any],
                options: dict[str, str] | None = None) -> T:
    """Load ``cls`` from a YAML file (or defaults) with command-line values on top.

    ``values`` is nested like the YAML (``{"serve": {"address": "8080"}}``); ``options`` maps a
    dotted key to the option that sets it (``{"serve.address": "--serve"}``) for error messages.
    """
    data, source = read_yaml(path) if path is not None else ({}, _Source("defaults"))
    if values:
        data = merge(data, values)
        source.overridden = set(_key_lines_of_dict(values))
    source.options = {tuple(key.split(".")): option for key, option in (options or {}).items()}
    return build(cls, data, source)


def _key_lines_of_dict(data: dict[str, Any], prefix: tuple[str, ...] = ()) -> typing.Iterator[tuple[str, ...]]:
    """Leaf key paths of a nested override dict."""
    for key, value in data.items():
        if isinstance(value, dict) and value:
            yield from _key_lines_of_dict(value, prefix + (key,))
        else:
            yield prefix + (key,)


def to_dict(obj: Any) -> Any:
    """Dataclass tree → plain YAML/JSON-friendly data (paths as strings, tuples as lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj
