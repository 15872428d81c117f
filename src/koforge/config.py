"""Typed configuration: YAML presets composed onto dataclasses with OmegaConf.

Every component owns a `@dataclass(kw_only=True)` config that validates itself
in `__post_init__`. `load_config` merges, in order, the dataclass defaults, a
YAML file (a path, or a preset name shipped in `koforge/configs/<group>/`) and
`key=value` overrides from the command line, then builds the dataclass.
Unknown keys, wrong types and malformed YAML (named by file and line) are
`ConfigError`s. The library only ever receives the dataclass, never a raw dict.
"""
from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path
from typing import Any, Sequence, TypeVar

import yaml
from omegaconf import DictConfig, OmegaConf, StringNode
from omegaconf.errors import OmegaConfBaseException

from koforge._utils.errors import ConfigError
from koforge._utils.io import write_json

T = TypeVar("T")


def configs_dir() -> Path:
    """The folder of YAML presets shipped inside the package."""
    return Path(str(resources.files("koforge") / "configs"))


def preset_path(group: str, name: str, cls: type | None = None) -> Path:
    """Resolve a preset name (`group/name.yaml` in the package) or a YAML path; an unknown name lists the
    group's presets (those whose keys are fields of `cls`, when given: model and train presets share `lm/`)."""
    candidate = Path(name).expanduser()
    if candidate.suffix in (".yaml", ".yml") or candidate.is_file():  # a folder named like a preset (a run called 50m) is not one
        if not candidate.exists():
            raise ConfigError(f"config file '{candidate}' not found. Check the path.")
        return candidate
    shipped = configs_dir() / group / f"{name}.yaml"
    if not shipped.exists():
        known = sorted(p.stem for p in (configs_dir() / group).glob("*.yaml") if cls is None or _fits(p, cls))
        raise ConfigError(f"no {group} preset named '{name}'. Known presets: {', '.join(known) or 'none'}; or pass a YAML path.")
    return shipped


def _fits(path: Path, cls: type) -> bool:
    fields = {f.name for f in dataclasses.fields(cls)}
    try:
        return set(OmegaConf.load(path).keys()) <= fields
    except Exception:
        return False


def _load_yaml(path: Path) -> DictConfig:
    """A YAML file as a DictConfig; a parse error or a non-mapping file is a `ConfigError` naming the file (and line)."""
    try:
        layer = OmegaConf.load(path)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f", line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"config file '{path}' is not valid YAML{where}: {problem}. Fix the file (key: value per line).") from None
    except (OSError, UnicodeDecodeError) as e:
        fix = " Pass a UTF-8 YAML file of key: value lines, or a preset name." if isinstance(e, UnicodeDecodeError) else ""
        raise ConfigError(f"cannot read config file '{path}': {e}.{fix}") from None
    if not isinstance(layer, DictConfig):
        raise ConfigError(f"config file '{path}' must be a mapping of key: value, got a list.")
    return layer


def _is_text_field(config: DictConfig, key: str) -> bool:
    """Whether the dotted `key` names a `str` field of the structured `config`."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, DictConfig) or node._is_none():  # an Optional nested config left at None
            return False
        node = node._get_node(part, validate_access=False)
    return isinstance(node, StringNode)


def _override_example(cls: type) -> str:
    fields = [f for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING]
    return f"{fields[0].name}={fields[0].default}" if fields else "key=value"


_KEY_SHOWN = 60
"""Characters of an invalid key shown in an error message."""


def load_config(cls: type[T], source: str | Path | dict | None = None,
                overrides: Sequence[str] = (), group: str | None = None) -> T:
    """Build `cls` from defaults + a YAML file/preset/dict + `key=value` overrides."""
    source_file = None
    try:
        merged = OmegaConf.structured(cls)
        if source is not None:
            if isinstance(source, dict):
                layer = OmegaConf.create(source)
            else:
                path = preset_path(group, str(source), cls) if group else Path(source)
                if not path.exists():
                    raise ConfigError(f"config file '{path}' not found. Check the path.")
                source_file = path
                layer = _load_yaml(path)
            merged = OmegaConf.merge(merged, layer)
        if overrides:
            bad = [o for o in overrides if "=" not in o]
            if bad:
                raise ConfigError(f"override '{bad[0]}' is not of the form key=value (e.g. {_override_example(cls)}).")
            for override in overrides:
                key, value = override.split("=", 1)
                try:
                    layer = OmegaConf.from_dotlist([override])
                except yaml.YAMLError:  # values are read as YAML: '[', ':' or '{' need quotes
                    raise ConfigError(f"override '{override}': the value is not valid YAML; quote it, "
                                      f"e.g. '{key}=\"{value}\"'.") from None
                if isinstance(OmegaConf.select(layer, key.strip()), (bool, int, float)) and _is_text_field(merged, key.strip()):
                    # YAML reads yes/on/no as booleans, 0.10 as 0.1 and 007 as 7: a text field (a salt, a path)
                    # keeps what was typed (a JSON string is a quoted YAML scalar)
                    layer = OmegaConf.from_dotlist([f"{key}={json.dumps(value.strip(), ensure_ascii=False)}"])
                merged = OmegaConf.merge(merged, layer)
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or getattr(e, "key", None)
        msg = str(e).splitlines()[0]
        if key and len(str(key)) > _KEY_SHOWN:  # a text file passed as the config: its first line is the "key"
            short = " ".join(str(key).split())[:_KEY_SHOWN] + "..."
            msg, key = msg.replace(str(key), short), short
        if source_file is not None and source_file.suffix not in (".yaml", ".yml"):
            msg += f" ('{source_file}' is not a .yaml file: pass a YAML config of key: value lines)"
        owner = getattr(e, "object_type", None)  # the nested config the key belongs to (e.g. a recipe's stage)
        owner = owner if dataclasses.is_dataclass(owner) else cls
        hint = f" Valid keys of {owner.__name__}: {', '.join(f.name for f in dataclasses.fields(owner))}."
        raise ConfigError(f"invalid config for {cls.__name__}" + (f" at '{key}'" if key else "") + f": {msg}.{hint}") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"invalid config for {cls.__name__}: {e}") from None


def config_to_dict(config: Any) -> dict:
    """A JSON-ready dict of a (possibly nested) dataclass config."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def save_config(config: Any, path: str | Path) -> Path:
    """Write the resolved config as JSON beside an output."""
    return write_json(path, config_to_dict(config))
