"""Node configuration: YAML or JSON, embedded defaults, key created on first run (spec/node.md §Configuration).

The defaults are not repeated in code: they are the ``default`` keywords of
``node-config.schema.json``, collected by walking the schema, so the spec stays the one source.
:func:`load_config` parses the file (or nothing), validates it against the schema (a bad field
is a :class:`NodeConfigError` naming its JSON path), merges it over the defaults and resolves
paths. :func:`load_or_create_key` makes the data directory (0700) and the key file (0600, via the
identity layer) on first run and refuses a key file others can read.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from infernet_ref.errors import InfernetError
from infernet_ref.node.errors import NodeConfigError
from infernet_ref.specs import validate_data
from infernet_ref.specs.registry import default_registry

SCHEMA = "node-config"
MAX_CONFIG_BYTES = 1 << 20


def _defaults_of(schema: dict[str, Any]) -> Any:
    if "default" in schema:
        return copy.deepcopy(schema["default"])
    if schema.get("type") == "object" and "properties" in schema:
        out = {k: _defaults_of(v) for k, v in schema["properties"].items()}
        return {k: v for k, v in out.items() if v is not None}
    return None


def default_config() -> dict[str, Any]:
    """The embedded defaults: every ``default`` of node-config.schema.json."""
    out: dict[str, Any] = _defaults_of(default_registry().schema(SCHEMA))
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """A validated configuration with defaults applied; ``raw`` is the merged document."""

    raw: dict[str, Any]
    data_dir: Path
    key_file: Path

    @property
    def roles(self) -> list[str]:
        return list(self.raw["roles"])

    def section(self, name: str) -> dict[str, Any]:
        value: dict[str, Any] = self.raw.get(name, {})
        return value

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.data_dir / p


def parse_config_text(text: str | bytes, *, name: str = "config") -> dict[str, Any]:
    """Parse YAML (a superset of JSON) into a dict; NodeConfigError on anything else."""
    if len(text) > MAX_CONFIG_BYTES:
        raise NodeConfigError(f"{name}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise NodeConfigError(f"{name}: not valid YAML/JSON: {exc}") from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise NodeConfigError(f"{name}: the top level must be a mapping, not {type(doc).__name__}")
    return doc


def build_config(
    doc: dict[str, Any], *, name: str = "config", base_dir: Path | None = None
) -> NodeConfig:
    """Validate ``doc`` (spec/node.md §Configuration) and apply the defaults."""
    try:
        validate_data(doc, SCHEMA)
    except InfernetError as exc:
        raise NodeConfigError(f"{name}: {exc}") from exc
    raw = _merge(default_config(), doc)
    data_dir = Path(raw["data_dir"]).expanduser()
    if not data_dir.is_absolute():
        data_dir = (base_dir or Path.cwd()) / data_dir
    raw["data_dir"] = str(data_dir)
    key = Path(raw["key_file"]).expanduser()
    return NodeConfig(
        raw=raw, data_dir=data_dir, key_file=key if key.is_absolute() else data_dir / key
    )


def load_config(
    path: str | Path | None = None, *, overrides: dict[str, Any] | None = None
) -> NodeConfig:
    """Load ``path`` (YAML or JSON; None: defaults only), then apply ``overrides``."""
    doc: dict[str, Any] = {}
    base = None
    if path is not None:
        p = Path(path)
        try:
            text = p.read_bytes()
        except OSError as exc:
            raise NodeConfigError(f"cannot read config {p}: {exc.strerror}") from exc
        doc = parse_config_text(text, name=str(p))
        base = p.parent.resolve()
    return build_config(_merge(doc, overrides or {}), name=str(path or "defaults"), base_dir=base)


def load_or_create_key(cfg: NodeConfig) -> bytes:
    """The node's secret key; created (0600) with the data dir (0700) on first run."""
    from infernet_ref.nostr import generate_secret_key, load_key_file, save_key_file  # noqa: PLC0415

    cfg.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not cfg.key_file.exists():
        cfg.key_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        save_key_file(cfg.key_file, generate_secret_key())
    try:
        return load_key_file(cfg.key_file)
    except InfernetError as exc:
        raise NodeConfigError(f"key file {cfg.key_file}: {exc}") from exc


def dump_config(cfg: NodeConfig) -> str:
    return json.dumps(cfg.raw, indent=2, sort_keys=True)


def host_port(value: str) -> tuple[str, int]:
    """Split ``host:port`` (IPv6 in brackets)."""
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def env_overrides() -> dict[str, Any]:
    """``INFERNET_DATA_DIR`` overrides data_dir (handy for tests and containers)."""
    out: dict[str, Any] = {}
    if os.environ.get("INFERNET_DATA_DIR"):
        out["data_dir"] = os.environ["INFERNET_DATA_DIR"]
    return out
