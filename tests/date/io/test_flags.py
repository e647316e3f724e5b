"""Every script's parser: defaults shown in --help, and --threads applied as it is read."""
import pytest
import torch

from date.io.devices import add_threads_flag
from date.io.flags import Parser, positive_int
from date.run.parser import any_h_parser
from evaluation import cli
from evaluation.toy import bench as toy_bench


def help_of(parser: Parser) -> str:
    return " ".join(parser.format_help().split())  # argparse wraps lines; compare words


def test_help_shows_each_default_once():
    parser = Parser()
    parser.add_argument("--bs", type=positive_int, default=4, help="images per batch")
    parser.add_argument("--w", type=float, default=None, help="guidance scale (default: the pipeline's)")
    parser.add_argument("--lean", action="store_true", help="least memory")
    parser.add_argument("--skip_itrs", default="", help="update at these steps")
    parser.add_argument("--h_model", action="append", default=[], help="model of an h")
    text = help_of(parser)
    assert "images per batch (default: 4)" in text
    assert text.count("default") == 2  # --w says its own, once; switches, empty values and --help say none
    assert "least memory (default" not in text and "update at these steps (default" not in text


def test_generation_scripts_show_defaults_and_threads():
    text = help_of(any_h_parser("generation"))
    assert "images per batch (per process) (default: 4)" in text
    assert "--threads THREADS" in text and "default: torch's own" in text


def test_toy_bench_shows_defaults_and_the_generation_scripts_flag_names(capsys):
    with pytest.raises(SystemExit):
        toy_bench.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "prompts per sampling batch (default: 100)" in text and "--bs BS, --batch_size BS" in text
    assert "--text_path TEXT_PATH, --prompts TEXT_PATH" in text and "--threads THREADS" in text


def test_evaluation_scripts_share_threads():
    parser = Parser()
    cli.add_loader_args(parser, default_bs=16)
    assert "--threads" in help_of(parser) and "forward pass (default: 16)" in help_of(parser)


def test_threads_sets_torchs_threads_only_when_given(capsys):
    before = torch.get_num_threads()
    parser = Parser()
    add_threads_flag(parser)
    try:
        assert parser.parse_args([]).threads is None and torch.get_num_threads() == before
        assert parser.parse_args(["--threads", "1"]).threads == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--threads", "0"])
    assert exit_info.value.code == 2 and capsys.readouterr().err.startswith("error: argument --threads")
    assert torch.get_num_threads() == before
