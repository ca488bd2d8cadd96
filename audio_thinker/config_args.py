"""Config dataclasses as command lines: a field with its ``--help`` line, and ``HfArgumentParser`` over them
with the flags shown as ``--max-steps`` (the docs' spelling; ``--max_steps`` still parses)."""

from __future__ import annotations

import argparse
from dataclasses import field
from typing import Any

__all__ = ["config_field", "dashed_flags"]


def config_field(default: Any, help: str) -> Any:
    """A config field with its ``--help`` line (``HfArgumentParser`` reads ``metadata["help"]``)."""
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


def dashed_flags(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Show each flag that ``HfArgumentParser`` registers twice (``--max_steps``, ``--max-steps``) by its
    dashed spelling only, in the usage line and in ``--help``; the underscore spelling still parses."""
    for action in parser._actions:
        dashed = [o for o in action.option_strings if not (o.startswith("--") and "_" in o)]
        if dashed and len(dashed) < len(action.option_strings):
            action.option_strings = dashed  # parser._option_string_actions keeps both spellings
    return parser
