"""Config dataclasses as command lines: a field with its ``--help`` line, and ``HfArgumentParser`` over them
(as ``python -m audio_thinker.train`` does) with the flags shown as ``--max-steps``, the docs' spelling
(``--max_steps`` still parses)."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import field
from typing import Any

__all__ = ["HelpFormatter", "config_field", "config_flags", "config_parser", "dashed_flags"]


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The description and epilog as written (their examples keep their lines); each flag's default shown."""


def config_field(default: Any = dataclasses.MISSING, help: str = "", **argparse_kwargs: Any) -> Any:
    """A config field with its ``--help`` line (``HfArgumentParser`` reads ``metadata["help"]`` and passes the
    rest of the metadata, e.g. ``choices``, to ``add_argument``); no ``default``: a required flag."""
    metadata = {"help": help, **argparse_kwargs}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def dashed_flags(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Show each flag that ``HfArgumentParser`` registers twice (``--max_steps``, ``--max-steps``) by its
    dashed spelling only, in the usage line and in ``--help``; the underscore spelling still parses."""
    for action in parser._actions:
        dashed = [o for o in action.option_strings if not (o.startswith("--") and "_" in o)]
        if dashed and len(dashed) < len(action.option_strings):
            action.option_strings = dashed  # parser._option_string_actions keeps both spellings
    return parser


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def config_flags(
    parser: argparse.ArgumentParser,
    configs: Iterable[type],
    *,
    types: dict[str, Callable[[str], Any]] | None = None,
    given_only: bool = False,
) -> argparse.ArgumentParser:
    """Finish the flags ``HfArgumentParser`` made for ``configs``: ``types`` parse the fields argparse cannot
    (tuples, dicts: a function of the text); ``given_only`` leaves a flag that is not given out of the parsed
    namespace (so defaults can come from elsewhere, e.g. a YAML file), its help naming the config's default."""
    defaults = {f.name: _default(f) for c in configs for f in dataclasses.fields(c)}
    for action in parser._actions:
        if action.dest not in defaults:
            continue
        negations = {f"--no_{action.dest}", f"--no-{action.dest.replace('_', '-')}"}
        if negations & set(action.option_strings):  # --no-bf16: bf16 = False (not --no-think-consistency)
            action.help, action.default = f"turn {action.option_strings[-1][5:]} off", argparse.SUPPRESS
            continue
        if types and action.dest in types and action.type is not None:
            action.type = types[action.dest]
        if given_only and action.default is not argparse.SUPPRESS:
            action.help = f"{action.help} (default: {defaults[action.dest]})"  # the config's, as written
            action.default = argparse.SUPPRESS
    return dashed_flags(parser)


def config_parser(
    configs: type | Iterable[type],
    *,
    types: dict[str, Callable[[str], Any]] | None = None,
    given_only: bool = False,
    **kwargs: Any,
) -> argparse.ArgumentParser:
    """``HfArgumentParser`` over ``configs`` (a flag and a help line per field, defaults shown), finished by
    :func:`config_flags`; ``kwargs`` go to the parser (``prog``, ``description``, ...)."""
    from transformers import HfArgumentParser

    configs = [configs] if isinstance(configs, type) else list(configs)
    kwargs.setdefault("formatter_class", HelpFormatter)
    parser = HfArgumentParser(configs, **kwargs)
    return config_flags(parser, configs, types=types, given_only=given_only)
