"""Typer choices built from :mod:`escmvq.core.vocab`, so ``--help`` lists the values
(``<awgn|rayleigh>``) and a new name in the vocabulary reaches every command.

Each option parses with :func:`choice_parser`: a bad value is one line on stderr and exit 2
(as every usage error of the CLI), and the command receives the plain string, never an enum
member (f-strings and JSON then show the value itself).
"""
from __future__ import annotations

import enum

import typer

from escmvq.cli.common import fail
from escmvq.core import vocab

__all__ = ["Device", "Channel", "Allocator", "Variant", "EvalDataset", "JpegEnergy", "JpegHeaders", "CsiMode", "choice_parser",
           "choice_option", "ChannelOpt", "CsiOpt", "PilotsOpt"]


def _enum(name: str, values) -> type[enum.Enum]:
    return enum.Enum(name, {v.replace("-", "_"): v for v in values}, type=str)


Device = _enum("Device", vocab.DEVICES)
Channel = _enum("Channel", vocab.CHANNELS)
Allocator = _enum("Allocator", vocab.ALLOCATORS)
Variant = _enum("Variant", vocab.VARIANTS)
EvalDataset = _enum("EvalDataset", vocab.EVAL_DATASETS)
JpegEnergy = _enum("JpegEnergy", vocab.JPEG_ENERGIES)
JpegHeaders = _enum("JpegHeaders", vocab.JPEG_HEADERS)
CsiMode = _enum("CsiMode", vocab.CSI_MODES)


def _expected(values) -> str:
    values = list(values)
    return f"{values[0]} or {values[1]}" if len(values) == 2 else "one of " + ", ".join(values)


def choice_parser(option: str, choices: type[enum.Enum]):
    """typer parser of ``option``: the value (case and surrounding spaces ignored) as a plain
    string, or ``error: OPTION: expected A or B, got 'x'`` and exit 2."""
    values = [c.value for c in choices]

    def parse(value):
        if value is None:
            return None
        text = value.value if isinstance(value, enum.Enum) else str(value).strip().lower()
        if text not in values:
            fail(f"{option}: expected {_expected(values)}, got {value!r}", 2)
        return text

    return parse


def choice_option(default: str, option: str, choices: type[enum.Enum], help: str, *names: str):  # noqa: A002
    """A ``typer.Option`` over ``choices`` (annotate the parameter with ``choices``)."""
    return typer.Option(default, option, *names, parser=choice_parser(option, choices), help=help)


ChannelOpt = choice_option("rayleigh", "--channel", Channel, "rayleigh (block fading, perfect CSI) or awgn.")
CsiOpt = choice_option("perfect", "--csi", CsiMode,
                       "perfect (the receiver is handed h, as in the paper) or pilots (pilots + a CRC-checked plan "
                       "header before each tile; the receiver estimates h).")
PilotsOpt = typer.Option(8, "--pilots", min=1, max=4096, help="Pilot symbols per tile with --csi pilots.")
