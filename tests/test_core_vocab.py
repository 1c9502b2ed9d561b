"""One vocabulary (escmvq.core.vocab) behind the checks and the ``--help`` choices."""
from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from escmvq.core import vocab


def test_modules_agree_with_the_vocabulary():
    from escmvq.core.alloc import validate
    from escmvq.eval import datasets, jpeg_ldpc, sweep
    from escmvq.runtime import bench, frame

    assert frame.CHANNELS == sweep.CHANNELS == vocab.CHANNELS  # the frame stores the index: order matters
    assert set(validate.METHODS) == set(vocab.ALLOCATORS) and sweep.ESC_METHODS == vocab.ALLOCATORS
    assert validate.VARIANTS == vocab.VARIANTS
    assert tuple(datasets.DATASETS) == vocab.EVAL_DATASETS
    assert jpeg_ldpc.HEADERS == vocab.JPEG_HEADERS and bench.DEVICES == vocab.DEVICES
    with pytest.raises(ValueError, match=r"^channel: expected one of awgn, rayleigh, got 'rician'$"):
        vocab.check_name("channel", "rician", vocab.CHANNELS)


def _help(*cmd) -> str:
    out = CliRunner().invoke(__import__("escmvq.cli.main", fromlist=["app"]).app, [*cmd, "--help"],
                             env={"COLUMNS": "200"}).output
    return re.sub(r"\s+", " ", out)


@pytest.mark.parametrize("cmd, shown", [
    (("eval",), ["<awgn|rayleigh>", "<cifar10|kodak>", "<total|per-symbol>", "<stripped|full>",
                 "jcamp, jcap, jpeg-ldpc"]),
    (("export",), ["<jcamp|jcap>", "<exact|paper>"]),
    (("bench",), ["<cpu|cuda|tensorrt|jetson>", "<awgn|rayleigh>"]),
    (("link",), ["<awgn|rayleigh>"]),
])
def test_help_lists_the_choices(cmd, shown):
    text = _help(*cmd)
    for s in shown:
        assert s in text, (cmd, s)


@pytest.mark.parametrize("args, msg", [
    (["eval", "--channel", "rician"], "error: --channel: expected awgn or rayleigh, got 'rician'"),
    (["eval", "--jpeg-headers", "none"], "error: --jpeg-headers: expected stripped or full, got 'none'"),
    (["export", "x.ckpt", "--variant", "fast"], "error: --variant: expected exact or paper, got 'fast'"),
    (["bench", "--device", "tpu"], "error: --device: expected one of cpu, cuda, tensorrt, jetson, got 'tpu'"),
    (["link", "img.png", "--snr", "10", "--channel", "x"], "error: --channel: expected awgn or rayleigh, got 'x'"),
])
def test_a_bad_choice_is_one_line_and_exit_2(args, msg):
    from escmvq.cli.main import app

    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2 and r.stderr.strip() == msg, r.output


def test_choices_reach_the_command_as_plain_strings():
    from escmvq.cli.choices import Channel, choice_parser

    parse = choice_parser("--channel", Channel)
    assert parse(" AWGN ") == "awgn" and type(parse("rayleigh")) is str and parse(Channel.awgn) == "awgn"
