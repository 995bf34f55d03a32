"""Config-first runs: a dataclass holds the defaults, a YAML file overrides them, command-line flags override
the file, and the resolved config is saved beside the outputs (``config.yaml``)."""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence, TypeVar, Union

import yaml

from coseg.atomic import write_text_atomic

C = TypeVar("C")


class ConfigError(ValueError):
    """A config file or override that does not fit the config's fields or types."""


@contextlib.contextmanager
def usage_errors(what: str = "") -> Iterator[None]:
    """Raise a ``ValueError`` of the block (a value an option cannot take, told by the code that takes it) as a
    ``ConfigError``, which the commands tell as a usage error, its message after ``what: `` when given."""
    try:
        yield
    except ValueError as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{what}: {e}" if what else str(e)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """The safe loader refusing a key given twice in one mapping (PyYAML keeps the last one without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue  # a merge's keys may be overridden; a key that is no scalar the loader refuses itself
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' given twice (lines {seen[key].start_mark.line + 1} and "
                    f"{key_node.start_mark.line + 1})", key_node.start_mark)
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


class _TextLoader(_UniqueKeyLoader):
    """The safe loader reading every plain scalar but null as its text: a group named ``012`` stays '012' (the
    safe loader reads the octal number 10), ``1.10`` stays '1.10' and ``2024-01-01`` a name, not a date."""


_TextLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag in ("tag:yaml.org,2002:null", "tag:yaml.org,2002:merge")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def _holds_text(annotation: Any) -> bool:
    """Whether a field of type ``annotation`` holds text: ``str``, optional or in a list."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    if typing.get_origin(annotation) in (list, tuple):
        annotation = (*typing.get_args(annotation), Any)[0]
    return annotation is str


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    origin = typing.get_origin(annotation) or (annotation if annotation in (list, tuple) else None)  # bare list too
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        errors = []
        for arg in args:
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError("; ".join(errors))
    if origin in (list, tuple):
        if value is None:  # a YAML key left without a value (`train_groups:`): no items
            value = []
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"'{key}' must be a list, got {value!r}")
        (item_type, *_rest) = typing.get_args(annotation) or (Any,)
        items = [_coerce(v, item_type, key) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is typing.Literal:
        allowed = typing.get_args(annotation)
        if value not in allowed:
            raise ConfigError(f"'{key}' must be one of {', '.join(map(str, allowed))}, got {value!r}")
        return value
    if annotation is Any:
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"'{key}' must be true or false, got {value!r}")
    if annotation in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"'{key}' must be a number, got {value!r}")
        try:
            coerced = annotation(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"'{key}' must be {annotation.__name__}, got {value!r}") from None
        if annotation is float and not math.isfinite(coerced):
            raise ConfigError(f"'{key}' must be a finite number, got {value!r}")
        if annotation is int and isinstance(value, float) and coerced != value:
            raise ConfigError(f"'{key}' must be an integer, got {value!r}")
        return coerced
    if annotation is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"'{key}' must be a string, got {value!r}")
        return str(value)
    if annotation is dict or typing.get_origin(annotation) is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"'{key}' must be a mapping, got {value!r}")
        return dict(value)
    raise ConfigError(f"'{key}': unsupported config type {annotation!r}")


def config_from_dict(cls: type[C], data: Mapping[str, Any], source: str = "config") -> C:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise ``ConfigError`` naming ``source``."""
    return cls(**_checked_values(cls, data, source))


def _checked_values(cls: type, data: Mapping[str, Any], source: str) -> dict[str, Any]:
    """``data`` coerced to the types of ``cls``'s fields, ``~`` expanded in the values of path fields
    (:func:`expand_paths`); unknown keys and wrong types raise ``ConfigError`` naming ``source``."""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(map(str, set(data) - fields))  # YAML keys may be numbers, booleans or null
    if unknown:
        spelt = {k: k.replace("-", "_").lower() for k in unknown}  # a flag's spelling (image-size), another case
        named = [f"{k} (the key is {spelt[k]})" if spelt[k] in fields else k for k in unknown]
        raise ConfigError(f"{source}: unknown key(s) {', '.join(named)}; valid keys: {', '.join(sorted(fields))}")
    values = {}
    for key, value in data.items():
        try:
            values[key] = _coerce(value, hints[key], key)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
    return expand_paths(cls, values)


def expand_paths(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` (field → value of dataclass ``cls``) with a leading ``~`` of each text value of a path field (one
    whose metadata has ``path``) expanded to the home folder, as the shell does for an unquoted path: a YAML file's
    or a quoted one's would otherwise be a folder named ``~`` in the current one."""
    paths = {f.name for f in dataclasses.fields(cls) if f.metadata.get("path")}
    return {k: os.path.expanduser(v) if k in paths and isinstance(v, str) else v for k, v in values.items()}


def _yaml_problem(error: yaml.YAMLError) -> str:
    """What is wrong in a YAML document and where (line, column), in one line: PyYAML's own message spreads over
    lines, quoting the document as "<unicode string>"."""
    if not isinstance(error, yaml.MarkedYAMLError):
        return " ".join(str(error).split())
    where = error.problem_mark or error.context_mark
    what = "; ".join(part for part in (error.context, error.problem) if part)
    return what + (f" (line {where.line + 1}, column {where.column + 1})" if where is not None else "")


def read_config_file(cls: type, path: Union[str, Path]) -> dict[str, Any]:
    """The entries of the YAML config file ``path`` for config class ``cls`` (safe loader), not yet checked: fields
    holding text take each value as written (a group named ``012`` stays '012', not the octal number 10)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        loaded = yaml.load(text, Loader=_UniqueKeyLoader)
        texts = yaml.load(text, Loader=_TextLoader)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config file ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a text file in UTF-8 (byte {e.start}: {e.reason})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(e)}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of keys to values")
    hints = typing.get_type_hints(cls)
    return {k: texts[k] if k in hints and _holds_text(hints[k]) else v for k, v in loaded.items()}


def load_config(cls: type[C], path: Optional[Union[str, Path]] = None,
                overrides: Optional[Mapping[str, Any]] = None) -> C:
    """Defaults of ``cls`` ← YAML file ``path`` (:func:`read_config_file`) ← ``overrides``, the command line's
    (entries that are None are skipped); a bad value is named with where it came from, the file or the command
    line. An override also replaces the file's entries that ``cls.REPLACED_BY`` (a class attribute, when there is one:
    key → keys) names for its key: another way of giving what it gives (explicit groups for the file's split). A
    leading ``~`` of a path field's value, from either, is the home folder (:func:`expand_paths`)."""
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    replaced = set(given) | {k for key in given for k in getattr(cls, "REPLACED_BY", {}).get(key, ())}
    in_file = read_config_file(cls, path) if path is not None else {}
    values = _checked_values(cls, {k: v for k, v in in_file.items() if k not in replaced}, str(path))
    values.update(_checked_values(cls, given, "command line"))
    return cls(**values)


def check_at_least(cfg: Any, minimum: int, *names: str) -> None:
    """Raise ``ConfigError`` naming the option if a set (not None) field of ``cfg`` among ``names`` is below
    ``minimum`` or NaN (which compares below nothing)."""
    for name in names:
        value = getattr(cfg, name)
        if value is not None and not value >= minimum:
            raise ConfigError(f"{name} must be >= {minimum}, got {value}")


def check_choice(cfg: Any, name: str, choices: Sequence[str]) -> None:
    """Raise ``ConfigError`` naming the option and the valid values if field ``name`` of ``cfg`` is set (not None)
    and not one of ``choices`` (e.g. a registry's names)."""
    value = getattr(cfg, name)
    if value is not None and value not in choices:
        raise ConfigError(f"{name} {value!r} is unknown; valid: {', '.join(choices)}")


SEEDS = 2**32  # NumPy takes seeds in [0, 2**32)


def check_seed(cfg: Any, runs: int = 1) -> None:
    """Raise ``ConfigError`` naming the option if ``cfg.seed`` is not an integer in [0, 2**32 - ``runs``]: ``runs``
    runs take the seeds ``seed`` to ``seed + runs - 1`` (an ensemble's members), each one NumPy must take."""
    if not 0 <= cfg.seed <= SEEDS - runs:
        members = f" (the {runs} members take seeds seed to seed + {runs - 1})" if runs > 1 else ""
        raise ConfigError(f"seed must be in [0, {SEEDS - runs}]{members}, got {cfg.seed}")


def check_fraction(cfg: Any, name: str) -> None:
    """Raise ``ConfigError`` naming the option if field ``name`` of ``cfg`` (a share held out, e.g. for validation,
    or a decay) is not in [0, 1)."""
    value = getattr(cfg, name)
    if not 0 <= value < 1:
        raise ConfigError(f"{name} must be in [0, 1), got {value}")


def check_one_validation_choice(cfg: Any, names_field: str) -> None:
    """Raise ``ConfigError`` naming both options if ``cfg.val_fraction`` is set to another value than its default
    (even 0, no validation) beside the validation groups or classes that field ``names_field`` names: both choose
    them (the share was ignored)."""
    from coseg.data.io import printable

    names = getattr(cfg, names_field)
    default = next(f.default for f in dataclasses.fields(cfg) if f.name == "val_fraction")
    if names and cfg.val_fraction != default:
        none = " (no validation)" if not cfg.val_fraction else ""
        what = names_field.removeprefix("val_")
        raise ConfigError(f"--val-fraction {cfg.val_fraction}{none} and --{names_field.replace('_', '-')} "
                          f"{', '.join(map(printable, names))} both choose the validation {what}: give one of them")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A plain dict of the config with YAML-friendly values (tuples → lists, paths → strings)."""
    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return {k: plain(v) for k, v in dataclasses.asdict(cfg).items()}


NOT_SAVED = frozenset({"overwrite"})
"""Options that are one command's action, not the run's: a reused ``config.yaml`` must not replace a run."""


def save_config(cfg: Any, path: Union[str, Path]) -> None:
    """Write the resolved config as YAML, atomically (but for :data:`NOT_SAVED`)."""
    values = {k: v for k, v in config_to_dict(cfg).items() if k not in NOT_SAVED}
    write_text_atomic(path, yaml.safe_dump(values, sort_keys=False, allow_unicode=True))
