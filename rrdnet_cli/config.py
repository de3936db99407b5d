"""The run configuration: one frozen dataclass, loaded strictly from YAML presets or files.

Every key is checked: unknown keys, wrong types and out-of-range values raise ``ConfigError``
naming the key, so a typo in a preset never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

DEFAULT_PRESET = "default"
# A config is a few hundred bytes; a larger file is a mistake or an attack (see _load_yaml).
MAX_CONFIG_BYTES = 1 << 20
# What an error message quotes of a value: enough to recognise it, never a screenful.
MAX_SHOWN = 200
FLOAT32_MAX = 3.4028234663852886e38
# torch.manual_seed takes a 64-bit unsigned seed.
MAX_SEED = 2**64 - 1
# Upper bounds of the size, count and step keys: far beyond any real use (the paper takes 1000
# steps on the whole image), low enough that a stranger's config cannot ask for unbounded time
# or memory.
MAX_ITERATIONS = 100_000
MAX_SIDE = 65_536
MAX_CROP_SIZE = 4096
MAX_CROPS_PER_STEP = 256
# What one step of the crops strategy may hold, in crop pixels: as much as a 4096x4096 crop.
MAX_CROP_PIXELS = MAX_CROP_SIZE * MAX_CROP_SIZE


def _option(
    default,
    help: str,
    *,
    minimum=None,
    exclusive=False,
    choices=None,
    maximum=None,
    pattern=None,
    keywords=(),
    odd=False,
):
    # keywords: strings a numeric field also accepts in place of a number (gamma: "auto").
    return field(
        default=default,
        metadata={
            "help": help,
            "minimum": minimum,
            "exclusive": exclusive,
            "maximum": maximum,
            "choices": choices,
            "pattern": pattern,
            "keywords": keywords,
            "odd": odd,
        },
    )


# The mean brightness that gamma "auto" aims for: the best of the swept targets in benchmarks/results/quality.json.
AUTO_BRIGHTNESS = 0.5


@dataclass(frozen=True)
class Config:
    """Everything that decides an enhancement's numbers (plus where it runs)."""

    iterations: int = _option(1000, "Adam steps on the full image", minimum=0, maximum=MAX_ITERATIONS)
    # Fits diverge well below 1 already, and near float32's limit the rate itself overflows.
    learning_rate: float = _option(1e-3, "Adam learning rate", minimum=0.0, exclusive=True, maximum=1.0)
    illumination_weight: float = _option(1.0, "weight of the illumination loss", minimum=0.0)
    reflectance_weight: float = _option(1.0, "weight of the reflectance loss", minimum=0.0)
    noise_weight: float = _option(5000.0, "weight of the noise loss", minimum=0.0)
    reflectance_fidelity_weight: float = _option(1.0, "weight of |I/L - R| inside the reflectance loss", minimum=0.0)
    gamma: float | str = _option(
        0.4,
        "illumination is raised to this power; 'auto': the power that gives the target brightness",
        minimum=0.0,
        exclusive=True,
        keywords=("auto",),
    )
    brightness: float | str = _option(
        AUTO_BRIGHTNESS,
        "mean brightness of the result that gamma 'auto' aims for; 'auto': chosen by the scene "
        "(local tone mapping: its lit content metered to mid-grey; global: 0.4)",
        minimum=0.0,
        maximum=1.0,
        keywords=("auto",),
    )
    tone_mapping: str = _option(
        "global",
        "how gamma 'auto' renders: local (a gain per region of the scene, colours kept) or global "
        "(one gamma and exposure for the whole photo)",
        choices=("local", "global"),
    )
    gamma_floor: float = _option(
        # light.GAMMA_MIN; the config stays free of torch imports.
        0.1,
        "lowest gamma that 'auto' tries; a brighter target is reached with an exposure gain",
        minimum=0.0,
        exclusive=True,
        maximum=1.0,
    )
    denoise: float | str = _option(
        "off",
        "denoise where the light was raised: 'auto', 'off', or a strength (multiple of the estimated noise level)",
        minimum=0.0,
        exclusive=True,
        # 100 times the noise level already clears every detail; far larger ones overflow.
        maximum=100.0,
        keywords=("auto", "off"),
    )
    blur_size: int = _option(
        5, "side of the Gaussian that smooths the image gradients (odd)", minimum=1, maximum=1001, odd=True
    )
    blur_sigma: float = _option(3.0, "sigma of that Gaussian", minimum=0.0, exclusive=True)
    seed: int = _option(
        0, "seed of the network's initial weights and of the crop positions", minimum=0, maximum=MAX_SEED
    )
    device: str = _option("auto", "auto, cpu, cuda or cuda:N", pattern=r"auto|cpu|cuda(:\d+)?")
    # Speed settings. Their defaults reproduce the paper: every step on the whole image in fp32.
    strategy: str = _option(
        "full",
        "what each Adam step sees: the full optimisation image, or random crops of it",
        choices=("full", "crops"),
    )
    optimisation_side: int = _option(
        0, "optimise on a copy downscaled to this longer side (0: original size)", minimum=0, maximum=MAX_SIDE
    )
    crop_size: int = _option(96, "side of each random crop (strategy crops)", minimum=16, maximum=MAX_CROP_SIZE)
    crops_per_step: int = _option(
        4, "random crops per Adam step (strategy crops)", minimum=1, maximum=MAX_CROPS_PER_STEP
    )
    learning_rate_schedule: str = _option(
        "constant",
        "constant, or cosine decay to zero over the iterations",
        choices=("constant", "cosine"),
    )
    convergence_tolerance: float = _option(
        0.0,
        "stop when a window's mean loss improves on the previous by less (0: never)",
        minimum=0.0,
    )
    convergence_window: int = _option(25, "steps per window of the convergence test", minimum=1, maximum=MAX_ITERATIONS)
    precision: str = _option(
        "fp32",
        "network arithmetic while optimising: fp32, bf16, or auto (bf16 where it is fast)",
        choices=("fp32", "bf16", "auto"),
    )
    initial_weights: str = _option(
        "random",
        "where the fit starts: weights drawn from the seed (the paper), or the shipped "
        "meta-learned set (rrdnet_cli/data/initial_weights.md), which needs far fewer steps",
        choices=("random", "learned"),
    )
    initial_illumination: str = _option(
        "network",
        "illumination at step 0: the network's own (about 0.5), or the image's mean "
        "channel maximum (its last bias set so; dark photos then need far fewer steps); "
        "random initial weights only",
        choices=("network", "image"),
    )
    noise_map: str = _option(
        "fitted",
        "the noise map N: fitted by the network's noise branch (the paper), or zero "
        "(the branch is not run: a third less work where the fit would leave N at zero anyway)",
        choices=("fitted", "zero"),
    )
    frozen_layers: int = _option(
        0,
        "the first this many convolutions of each branch keep their starting weights: their output "
        "is computed once per image and each step fits only the rest (0: all fitted, the paper)",
        minimum=0,
        # RRDNet's branches have five convolutions; at least the last is fitted.
        maximum=4,
    )
    tile_size: int = _option(
        0, "final full-resolution pass in tiles of this side (0: one pass)", minimum=0, maximum=MAX_SIDE
    )
    final_pass: str = _option(
        "full",
        "full: the final pass runs the network on the image (on a copy above final_pass_pixels); "
        "auto: the same, but where the light follows the scene (gamma auto, tone_mapping local), "
        "which takes only the fitted light's large structure, the illumination is computed on the "
        "fit's own downscaled copy and carried to full size by the guided upsampling",
        choices=("full", "auto"),
    )
    final_pass_pixels: int = _option(
        0,
        "run the final pass's illumination on a copy of at most this many pixels and carry it to full "
        "size by a guided upsampling (0: always at full size)",
        minimum=0,
        maximum=MAX_SIDE * MAX_SIDE,
    )

    @property
    def light_follows_scene(self) -> bool:
        """Whether the result is rendered by the local light (``gamma`` auto, ``tone_mapping`` local)."""
        return self.gamma == "auto" and self.tone_mapping == "local"

    @property
    def fits_noise(self) -> bool:
        """Whether the noise branch is fitted and run (``noise_map: fitted``) or N held at zero."""
        return self.noise_map == "fitted"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self, **overrides: Any) -> Config:
        """A copy with ``overrides`` applied and validated (``None`` values are ignored).

        Asking for a ``brightness`` without a ``gamma`` means "pick gamma for that brightness",
        so it sets gamma to "auto"; a numeric gamma together with a brightness is a conflict.
        """
        overrides = {key: value for key, value in overrides.items() if value is not None}
        if "brightness" in overrides:
            gamma = overrides.setdefault("gamma", "auto")
            if gamma != "auto":
                raise ConfigError(
                    f"option: gamma {shown(gamma)} and brightness {shown(overrides['brightness'])} conflict "
                    "(a brightness picks gamma per image; give one of them, or gamma 'auto')"
                )
        values = self.to_dict()
        values.update(overrides)
        return from_dict(values, source="option")


FIELDS = {f.name: f for f in dataclasses.fields(Config)}


class LongInteger:
    """An integer in a YAML file with more digits than Python converts from text (about 4300):
    kept as its digit count, so that the check of its key can refuse it by name."""

    def __init__(self, digits: int) -> None:
        self.digits = digits

    def __repr__(self) -> str:
        return f"an integer of {self.digits} digits"


def shown(value: Any) -> str:
    """``repr(value)`` cut to ``MAX_SHOWN`` characters, for error messages."""
    try:
        text = repr(value)
    except ValueError:  # an int with more digits than Python will print (from the Python API)
        text = f"an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def _check_value(name: str, value: Any, source: str) -> Any:
    spec = FIELDS[name]
    meta = spec.metadata
    # A field that takes keywords is annotated "float | str": past its keywords it is a number.
    expected = spec.type.split(" | ")[0]
    where = f"{source}: key '{name}'"
    if isinstance(value, str) and value in meta["keywords"]:
        return value
    # YAML 1.1 reads an unquoted "off" as false: for a key that takes 'off', that is what was meant.
    if value is False and "off" in meta["keywords"]:
        return "off"
    # bool is an int subclass in Python; 'iterations: true' is a typo, not a number.
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected {expected}, got boolean {shown(value)}")
    if isinstance(value, LongInteger):
        raise ConfigError(f"{where}: out of range, got {shown(value)}")
    if expected == "int":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {shown(value)}")
    elif expected == "float":
        if not isinstance(value, (int, float)):
            accepted = "".join(f" or '{keyword}'" for keyword in meta["keywords"])
            raise ConfigError(f"{where}: expected a number{accepted}, got {shown(value)}")
        value = float(value)
        # The network computes in float32: a larger number overflows to infinity there.
        if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
            raise ConfigError(f"{where}: expected a finite number within float32's range, got {shown(value)}")
    elif expected == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {shown(value)}")
    minimum, maximum = meta["minimum"], meta["maximum"]
    if minimum is not None:
        if meta["exclusive"] and value <= minimum:
            raise ConfigError(f"{where}: must be greater than {minimum}, got {shown(value)}")
        if not meta["exclusive"] and value < minimum:
            raise ConfigError(f"{where}: must be at least {minimum}, got {shown(value)}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{where}: must be at most {maximum}, got {shown(value)}")
    if meta["odd"] and value % 2 == 0:
        raise ConfigError(f"{where}: must be odd, got {shown(value)}")
    if meta["choices"] is not None and value not in meta["choices"]:
        choices = ", ".join(map(str, meta["choices"]))
        raise ConfigError(f"{where}: must be one of {choices}, got {shown(value)}")
    if meta["pattern"] is not None and not re.fullmatch(meta["pattern"], value):
        raise ConfigError(f"{where}: {spec.metadata['help']} expected, got {shown(value)}")
    return value


def check_value(name: str, value: Any, source: str = "config") -> Any:
    """``value`` checked (and normalised) as config key ``name``; ``ConfigError`` if it is not one."""
    if name not in FIELDS:
        raise ConfigError(f"{source}: unknown key {shown(name)}")
    return _check_value(name, value, source)


def from_dict(values: dict[str, Any], source: str = "config") -> Config:
    """Build a validated ``Config``; keys missing from ``values`` keep their defaults."""
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: expected a mapping of keys to values")
    unknown = sorted((key for key in values if key not in FIELDS), key=str)
    if unknown:
        known = ", ".join(FIELDS)
        raise ConfigError(f"{source}: unknown key {shown(unknown[0])} (known keys: {known})")
    checked = {name: _check_value(name, value, source) for name, value in values.items()}
    config = Config(**checked)
    _check_combinations(config, source)
    return config


# Below this a tile or an optimisation image is mostly padding; 0 keeps its meaning "off".
MIN_TILE_SIZE = 16
MIN_OPTIMISATION_SIDE = 16
MIN_FINAL_PASS_PIXELS = 64 * 64


def _check_combinations(config: Config, source: str) -> None:
    """Constraints that a single field's metadata cannot express."""
    if 0 < config.tile_size < MIN_TILE_SIZE:
        raise ConfigError(
            f"{source}: key 'tile_size': must be 0 (no tiling) or at least {MIN_TILE_SIZE}, got {config.tile_size}"
        )
    if config.strategy == "crops" and config.crop_size**2 * config.crops_per_step > MAX_CROP_PIXELS:
        raise ConfigError(
            f"{source}: key 'crops_per_step': {config.crops_per_step} crops of {config.crop_size}x{config.crop_size} "
            f"pixels are more than a step may hold ({MAX_CROP_PIXELS} pixels); use fewer or smaller crops"
        )
    if 0 < config.final_pass_pixels < MIN_FINAL_PASS_PIXELS:
        raise ConfigError(
            f"{source}: key 'final_pass_pixels': must be 0 (full size) or at least {MIN_FINAL_PASS_PIXELS}, "
            f"got {config.final_pass_pixels}"
        )
    if 0 < config.optimisation_side < MIN_OPTIMISATION_SIDE:
        raise ConfigError(
            f"{source}: key 'optimisation_side': must be 0 (original size) or at least "
            f"{MIN_OPTIMISATION_SIDE}, got {config.optimisation_side}"
        )


def preset_dir() -> Path:
    """Where the YAML presets live: inside the installed package, or ``configs/`` in a checkout."""
    here = Path(__file__).resolve().parent
    installed = here / "configs"
    return installed if installed.is_dir() else here.parent / "configs"


def preset_names() -> list[str]:
    return sorted(path.stem for path in preset_dir().glob("*.yaml"))


def _looks_like_path(text: str) -> bool:
    separators = {os.sep, os.altsep or os.sep, "/"}
    return any(separator in text for separator in separators) or text.endswith((".yaml", ".yml"))


def _resolve(name_or_path: str) -> Path:
    """A preset name wins over a file of the same name in the working directory: only an argument
    that looks like a path (a separator in it, or a .yaml/.yml ending) is read as a file."""
    if not _looks_like_path(name_or_path):
        preset = preset_dir() / f"{name_or_path}.yaml"
        if preset.is_file():
            return preset
        names = ", ".join(preset_names())
        hint = f"; for the file, write ./{name_or_path}" if Path(name_or_path).is_file() else ""
        raise ConfigError(f"{shown(name_or_path)}: no such preset (presets: {names}){hint}")
    path = Path(name_or_path)
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise ConfigError(f"{name_or_path}: config file not found") from None
    except OSError as error:  # a loop of links, a name too long, a folder it may not enter
        raise ConfigError(f"{name_or_path}: cannot read config ({error.strerror or error})") from None
    if stat.S_ISDIR(mode):
        raise ConfigError(f"{name_or_path}: is a folder, not a config file")
    if not stat.S_ISREG(mode):  # a FIFO would block the read, a device never end it
        raise ConfigError(f"{name_or_path}: not a regular file, not a config file")
    return path


_INT_TAG, _FLOAT_TAG = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe subset without anchors and aliases: a config never needs them, and nested
    aliases let a few hundred bytes expand to gigabytes (a "billion laughs"). A key given twice (YAML
    would keep the last one without a word), or one that is a list or mapping, is refused.
    Numbers are read as YAML 1.2 and Python read them: ``1e-3`` and ``.5e3`` are numbers (YAML 1.1
    wants a dot before the exponent), ``017`` is seventeen (not octal 15), ``1:20`` is text (not 80
    in base 60), ``0o17`` and ``0x1F`` are octal and hexadecimal."""

    def construct_yaml_int(self, node):
        text = str(self.construct_scalar(node))
        sign = -1 if text.startswith("-") else 1
        digits = text.lstrip("+-")
        base = {"0o": 8, "0x": 16}.get(digits[:2], 10)
        try:
            return sign * int(digits[2:] if base != 10 else digits, base)
        except ValueError:  # Python's limit on the digits of an int read from text
            return LongInteger(sum(character.isdigit() for character in text))

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.YAMLError(f"aliases are not allowed in a config (line {event.start_mark.line + 1})")
        event = self.peek_event()
        if getattr(event, "anchor", None) is not None:
            raise yaml.YAMLError(f"anchors are not allowed in a config (line {event.start_mark.line + 1})")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise yaml.YAMLError(f"a key must be a name, not a list or mapping (line {line})")
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.YAMLError(f"key {shown(key)} is given twice (line {line})")
            seen.add(key)
        return super().construct_mapping(node, deep)


# YAML 1.2's core schema for numbers in place of YAML 1.1's (the other implicit types stay).
_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag not in (_INT_TAG, _FLOAT_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictLoader.add_implicit_resolver(
    _INT_TAG, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")
)
_StrictLoader.add_implicit_resolver(
    _FLOAT_TAG,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)
_StrictLoader.add_constructor(_INT_TAG, _StrictLoader.construct_yaml_int)


def parse_yaml(text: str) -> Any:
    """``text`` read as a config is: YAML's safe subset, strictly (``_StrictLoader``). Raises
    ``yaml.YAMLError`` (or ``RecursionError``, nested too deeply)."""
    return yaml.load(text, Loader=_StrictLoader)


def _load_yaml(path: Path) -> Any:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config ({error.strerror or error})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: config file is larger than {MAX_CONFIG_BYTES // 1024} KiB; refused")
    if b"\0" in data:
        raise ConfigError(f"{path}: not a YAML config (binary data)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a YAML config (not UTF-8 text)") from None
    try:
        return parse_yaml(text)
    except yaml.YAMLError as error:
        first_line = str(error).splitlines()[0] if str(error) else "invalid YAML"
        raise ConfigError(f"{path}: invalid YAML: {first_line[:MAX_SHOWN]}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML: nested too deeply") from None


def load_config(name_or_path: str | Path | None = None, **overrides: Any) -> Config:
    """Load a preset by name (``"paper"``) or a YAML file, then apply ``overrides``.

    ``None`` loads the default preset. A ``Path`` is always a file; a string is a preset name
    unless it looks like a path (see ``_resolve``). Override values of ``None`` are ignored, so
    command-line options that were not given leave the file's values alone.
    """
    if isinstance(name_or_path, Path):
        path = _resolve(str(name_or_path) if _looks_like_path(str(name_or_path)) else f".{os.sep}{name_or_path}")
    else:
        path = _resolve(name_or_path or DEFAULT_PRESET)
    values = _load_yaml(path)
    if values is not None and not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, got {type(values).__name__}")
    return from_dict(values or {}, source=str(path)).replace(**overrides)
