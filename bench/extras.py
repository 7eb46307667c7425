"""Optional packages: imported only where the feature that needs them is switched on.

``pip install -e .`` alone runs the micro-world quickstart. The ``real`` extra (peft, gguf,
alt-profanity-check) is needed only for LoRA, GGUF files and the real-text toxicity scorer, the
``ray`` extra only for the Ray executor, the ``tracking`` extra (trackio, tensorboard) only for
``report_to``;
reaching one of those without the package is a one-line error naming the extra, not a
``ModuleNotFoundError`` deep inside a cell.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from bench.errors import UserError

# module -> (distribution, extra) for every optional import; tests/test_imports.py checks that
# each matches pyproject.toml and that no optional module is imported any other way
OPTIONAL: dict[str, tuple[str, str]] = {
    "peft": ("peft", "real"),
    "gguf": ("gguf", "real"),
    "profanity_check": ("alt-profanity-check", "real"),
    "ray": ("ray", "ray"),
    "trackio": ("trackio", "tracking"),
    "tensorboard": ("tensorboard", "tracking"),  # torch.utils.tensorboard imports it
}


class MissingExtra(UserError, ImportError):
    """An optional package is needed and absent; the message names the extra to install."""


def require(module: str, feature: str) -> ModuleType:
    """Import an optional ``module`` for ``feature``, or raise :class:`MissingExtra`."""
    dist, extra = OPTIONAL[module]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(f"{feature} needs the package {dist!r} (the {extra!r} extra); "
                           f"install it with: python3 -m pip install -e \".[{extra}]\"") from None
