"""rrdnet: brighten under-exposed photos with zero-shot RRDNet (robust Retinex decomposition)."""

from .config import Config, load_config
from .errors import ConfigError, InputError, OptimisationError, OutputError, RRDNetError, UsageError
from .model import RRDNet
from .pipeline import enhance
from .result import Enhancement

__all__ = [
    "Config",
    "ConfigError",
    "Enhancement",
    "InputError",
    "OptimisationError",
    "OutputError",
    "RRDNet",
    "RRDNetError",
    "UsageError",
    "enhance",
    "load_config",
]
__version__ = "0.1.0"
