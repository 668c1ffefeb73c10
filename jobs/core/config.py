"""The strict config base every job's config builds on, and YAML loading with errors that name the key.

Each job's config is a pydantic model that rejects unknown keys; a mistake comes back
as a `ConfigError` whose lines start with the key's path (`model.dimensions: ...`).
Sections several jobs share live in `jobs/core/sections.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError


class ConfigError(ValueError):
    """A bad setting; each line of the message starts with the setting's path."""


class StrictModel(BaseModel):
    """A config section: unknown keys are errors, enums stay enums, defaults are validated too."""

    model_config = ConfigDict(extra="forbid", use_enum_values=False, validate_default=True)


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b=c` overrides to a raw config dict; values are parsed as YAML scalars."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. model.dimensions=256")
        node = raw
        parts = key.strip().split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{'.'.join(parts[: i + 1])}: is a value, cannot set {key!r} inside it")
            node = child
        node[parts[-1]] = yaml.safe_load(value) if value != "" else ""
    return raw


def _format_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown setting"
        elif e["type"] == "missing":
            msg = "required setting is missing"
        elif "input" in e and e["type"] not in ("value_error", "assertion_error"):
            msg = f"{msg} (got {e['input']!r})"
        if msg.startswith("."):  # a model validator naming one of its fields: ".field: message"
            field_name, _, msg = msg[1:].partition(": ")
            path = f"{path}.{field_name}" if path else field_name
        lines.append(f"{path}: {msg}" if path else msg)
    return "\n".join(lines)


def parse_config(raw: dict[str, Any], schema: type[BaseModel]) -> Any:
    """Validate a raw dict as `schema`, one of the jobs' configs."""
    try:
        return schema.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err)) from None


def load_config(path: str | Path | None, overrides: list[str] | None, schema: type[BaseModel]) -> Any:
    """Read YAML (if a path is given), apply `--set` overrides, and validate as `schema`."""
    return parse_config(read_raw_config(path, overrides), schema)


def read_raw_config(path: str | Path | None, overrides: list[str] | None) -> dict[str, Any]:
    """The YAML (if a path is given) with the `--set` overrides applied, not yet validated."""
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"--config: no such file: {p}")
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as err:
            raise ConfigError(f"--config: {p} is not valid YAML: {err}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"--config: {p} must hold a mapping of sections (model, engine, sink, run...)")
        raw = loaded or {}
    return apply_overrides(raw, overrides or [])
