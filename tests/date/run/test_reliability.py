"""Every user mistake is one `error:` line and exit code 2, every stopped run one line, and nothing is written for a
refused input: the cases a new user ran into, then a property-based fuzz of the generation CLI's validation layer."""
import codecs
import os
import string

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import generate_date
import generate_date_clip
from date.pipeline.schedulers import SCHEDULERS
from date.run import loop, parser as run_parser
from date.io import flags
from date.io.captions import read_captions, write_captions
from tests.support.evaluation_helpers import assert_one_line_error, make_folder

CAPTIONS = ["a red circle", "a blue square on the left", "a green triangle", "a white circle"]


def toy_argv(text_path, save_path, *extra):
    return ["--model", "toy", "--clip_model", "toy", "--device", "cpu", "--text_path", str(text_path),
            "--save_path", str(save_path), "--steps", "2", "--bs", "2", *extra]


@pytest.mark.parametrize("data, message", [
    (b"caption\n\xff\xfe bad\n", "is not UTF-8 text (byte 0xff at offset 8)"),
    (b"", "is empty"),
    (b"caption\n", "no captions"),
    (b"prompt\nhello\n", "has no 'caption' column (columns: ['prompt'])"),
    (b"caption\nhello\n\"\"\n", "caption 1 is empty"),
    (b"caption\nhel\x00lo\n", "NUL"),
])
def test_bad_caption_files_are_one_line(tmp_path, capsys, data, message):
    path = tmp_path / "captions.csv"
    path.write_bytes(data)
    with pytest.raises(SystemExit) as exit_info:
        generate_date_clip.main(toy_argv(path, tmp_path / "out"))
    assert_one_line_error(capsys, exit_info, message)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le-bom", "utf-16-be-bom"])
def test_byte_order_marks_are_read(tmp_path, encoding):
    """What spreadsheet programs write: UTF-8 or UTF-16 with a byte-order mark, CRLF line ends, quoting."""
    text = "caption,extra\r\n\"a red circle, small\",1\r\nun carré bleu,2\r\n"
    path = tmp_path / "captions.csv"
    if encoding.endswith("-bom"):
        bom = codecs.BOM_UTF16_LE if "le" in encoding else codecs.BOM_UTF16_BE
        path.write_bytes(bom + text.encode(encoding[:9]))
    else:
        path.write_bytes(text.encode(encoding))
    assert read_captions(str(path)) == ["a red circle, small", "un carré bleu"]


def test_every_float_flag_of_every_script_refuses_non_finite_values(tmp_path, capsys):
    """No script has a plain `type=float` flag, and each finite type refuses nan and ±inf."""
    parsers = {"generate_date": run_parser.any_h_parser(""), "generate_date_clip": run_parser.clip_parser(""),
               "generate_date_ir": run_parser.image_reward_parser("")}
    finite_types = (flags.finite_float, flags.non_negative_float, flags.positive_float)
    checked = 0
    for name, parser in parsers.items():
        for action in parser._actions:
            assert action.type is not float, f"{name} {action.option_strings}: plain float lets nan through"
            if action.type in finite_types:
                for value in ("nan", "inf", "-inf", "NaN"):
                    with pytest.raises(SystemExit) as exit_info:
                        parser.parse_args([f"{action.option_strings[0]}={value}"])
                    assert_one_line_error(capsys, exit_info, action.option_strings[0], repr(value))
                    checked += 1
    assert checked >= 4 * 3 * 4  # --w, --lr_upt_prompt, --weight_prior in each script, and the baselines' flags


@pytest.mark.parametrize("flag, value", [("--w", "nan"), ("--lr_upt_prompt", "inf"), ("--weight_prior", "-inf")])
def test_non_finite_flags_write_nothing(tmp_path, capsys, flag, value):
    captions = tmp_path / "captions.csv"
    write_captions(str(captions), CAPTIONS)
    with pytest.raises(SystemExit) as exit_info:
        generate_date_clip.main(toy_argv(captions, tmp_path / "out", flag, value))
    assert_one_line_error(capsys, exit_info, flag)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, message", [(["--max_cnt", "0"], "nothing to generate"),
                                            (["--num_skip", "4"], "nothing to generate"),
                                            (["--device", "tpu"], "--device"),
                                            (["--steps", "0"], "positive integer"),
                                            (["--steps", "5", "--skip_itrs", "60-70"], "step 60 is outside the 5"),
                                            (["--steps", "5", "--skip_itrs", "60-70", "--dry_run"], "step 60 is outside"),
                                            (["--steps", "50", "--skip_intervals", "40-80"], "step 50 is outside the 50"),
                                            (["--skip_itrs", "10-10-10"], "lists step 10 more than once")])
def test_nothing_to_do_is_said_and_nothing_written(tmp_path, capsys, extra, message):
    captions = tmp_path / "captions.csv"
    write_captions(str(captions), CAPTIONS)
    with pytest.raises(SystemExit) as exit_info:
        generate_date_clip.main(toy_argv(captions, tmp_path / "out", *extra))
    assert_one_line_error(capsys, exit_info, message)
    assert not (tmp_path / "out").exists()


def test_update_steps_beyond_the_model_default_steps_are_refused_before_any_image(tmp_path, capsys):
    """Without --steps the count is the pipeline's (50 for the toy SD model): known once it is loaded, still before
    anything is written."""
    captions = tmp_path / "captions.csv"
    write_captions(str(captions), CAPTIONS)
    argv = toy_argv(captions, tmp_path / "out", "--skip_itrs", "60")
    argv[argv.index("--steps"):argv.index("--steps") + 2] = []
    with pytest.raises(SystemExit) as exit_info:
        generate_date_clip.main(argv)
    assert_one_line_error(capsys, exit_info, "--skip_itrs 60: step 60 is outside the 50 sampling steps (0 to 49)")
    assert not (tmp_path / "out").exists()


def test_dry_run_loads_nothing_and_writes_nothing(tmp_path, capsys):
    captions = tmp_path / "captions.csv"
    write_captions(str(captions), CAPTIONS)
    generate_date_clip.main(toy_argv(captions, tmp_path / "out", "--dry_run", "--num_skip", "1"))
    assert "would generate 3 images (all 4 captions" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()


def interrupt_after(monkeypatch, batches: int, error: BaseException) -> None:
    """`date.run.loop.generate` works for `batches` batches, then raises `error` (Ctrl-C, out of memory)."""
    real, calls = loop.generate, []

    def generate(*args, **kwargs):
        calls.append(1)
        if len(calls) > batches:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "generate", generate)


def test_ctrl_c_says_how_many_images_are_done_and_a_rerun_resumes(tmp_path, capsys, monkeypatch):
    captions = tmp_path / "captions.csv"
    write_captions(str(captions), CAPTIONS)
    argv = toy_argv(captions, tmp_path / "out", "--baseline")
    real = loop.generate
    interrupt_after(monkeypatch, 1, KeyboardInterrupt())
    with pytest.raises(SystemExit) as exit_info:
        generate_date_clip.main(argv)
    assert exit_info.value.code == 130
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("interrupted: 2 of 4 images are in ") and "run the same command again to resume" in last
    (folder,) = (tmp_path / "out").iterdir()
    assert sorted(p.name for p in folder.glob("*.png")) == ["0.png", "1.png"]
    monkeypatch.setattr(loop, "generate", real)
    generate_date_clip.main(argv)
    assert sorted(p.name for p in folder.glob("*.png")) == ["0.png", "1.png", "2.png", "3.png"]


def test_out_of_memory_names_the_flags_that_help(tmp_path, capsys, monkeypatch):
    captions = tmp_path / "captions.csv"
    write_captions(str(captions), CAPTIONS)
    interrupt_after(monkeypatch, 1, torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    with pytest.raises(SystemExit) as exit_info:
        generate_date_clip.main(toy_argv(captions, tmp_path / "out"))
    assert exit_info.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("error: out of GPU memory at --bs 2") and all(f in lines[-1] for f in ("--update_bs", "--lean"))
    assert not any("Traceback" in line for line in lines)
    (folder,) = (tmp_path / "out").iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["0.png", "1.png", "config.json", "subset.csv"]  # no partial file


@pytest.mark.parametrize("damage", ["corrupt_png", "symlink_loop", "directory_named_png", "non_image_files"])
def test_evaluation_folders_with_bad_files(tmp_path, capsys, damage):
    from evaluation import fid

    folder = tmp_path / "images"
    make_folder(str(folder), 3, seed=0)
    (folder / "notes.txt").write_text("not an image")  # ignored in every case: only <index>.png are evaluated
    (folder / "3.png.bak").write_bytes(b"junk")
    if damage == "corrupt_png":
        (folder / "1.png").write_bytes((folder / "1.png").read_bytes()[:40])
    elif damage == "symlink_loop":
        (folder / "1.png").unlink()
        os.symlink("1.png", folder / "1.png")
    elif damage == "directory_named_png":
        (folder / "1.png").unlink()
        (folder / "1.png").mkdir()
    argv = [str(folder), str(folder), "--num_eval", "3", "--inception_weights", "random", "--num_workers", "0"]
    if damage == "non_image_files":
        fid.main(argv)
        return
    with pytest.raises(SystemExit) as exit_info:
        fid.main(argv)
    assert_one_line_error(capsys, exit_info, "1.png")


def test_evaluation_folder_that_is_a_symlink_loop(tmp_path, capsys):
    from evaluation import fid

    os.symlink(tmp_path / "loop", tmp_path / "loop")
    with pytest.raises(SystemExit) as exit_info:
        fid.main([str(tmp_path / "loop"), str(tmp_path / "loop"), "--inception_weights", "random"])
    assert_one_line_error(capsys, exit_info, "loop")


# --- property-based: random flags and random caption files against the validation layer (--dry_run) ---

PLAUSIBLE = st.one_of(st.integers(1, 10).map(str), st.floats(0, 10).map(repr))
NUMBERS = st.one_of(PLAUSIBLE, PLAUSIBLE, PLAUSIBLE, st.integers(-3, 10).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                    st.sampled_from(["nan", "inf", "-inf", "1e400", "", "x", "0x10", "1_0", " 3", "٣"]),
                    st.text(string.printable, max_size=6))
FLAG_VALUES = {flag: NUMBERS for flag in ("--steps", "--bs", "--w", "--size", "--skip_freq", "--num_upt_prompt",
                                          "--lr_upt_prompt", "--generate_seed", "--max_cnt", "--num_skip",
                                          "--weight_prior", "--update_bs", "--optim_forward_guidance_wt",
                                          "--optim_num_steps", "--optim_max_iters", "--optim_lr", "--gamma_attn",
                                          "--gamma_norm")}
FLAG_VALUES.update({
    "--skip_itrs": st.one_of(st.just(""), st.text("0123456789-, x", max_size=8)),
    "--skip_intervals": st.one_of(st.just(""), st.text("0123456789-", max_size=6)),
    "--scheduler": st.one_of(st.sampled_from(sorted(SCHEDULERS)), st.text(max_size=5)),
    "--method": st.sampled_from(["date", "ug", "ebca", "gd", ""]),
    "--h": st.one_of(st.sampled_from(["clip", "ir", "clip:1,ir:0.5", "clip:nan", "clip:-1", ":", "clip,clip"]),
                     st.text(max_size=8)),
    "--dtype": st.sampled_from(["fp32", "fp16", "bf16", "fp8", ""]),
    "--device": st.sampled_from(["cpu", "cuda", "cuda:0", "tpu", "", "cpu:0"]),
})
SWITCHES = ["--baseline", "--fp16", "--lean", "--grad_ckpt", "--init_org", "--update_pooled", "--fp16_clip"]
CAPTION_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@st.composite
def caption_files(draw) -> bytes:
    """Well-formed CSVs in several encodings, with BOMs, quoting, empty rows and long captions, or random bytes."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.binary(max_size=200))
    header = draw(st.sampled_from(["caption", "caption", "caption,id", "id,caption", " caption", "Caption", "text"]))
    rows = draw(st.lists(st.one_of(CAPTION_TEXT, CAPTION_TEXT, st.just(""), st.just("x" * 5000)), max_size=6))
    quote = draw(st.booleans())
    lines = [header] + [('"' + r.replace('"', '""') + '"') if quote else r for r in rows]
    text = draw(st.sampled_from(["\n", "\r\n"])).join(lines)
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"]))
    return text.encode(encoding, errors="replace")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=caption_files(), chosen=st.dictionaries(st.sampled_from(sorted(FLAG_VALUES)), st.none(), max_size=5),
       switches=st.lists(st.sampled_from(SWITCHES), max_size=2, unique=True), values=st.data())
def test_fuzz_validation_plan_or_one_error_line(tmp_path_factory, capsys, data, chosen, switches, values):
    folder = tmp_path_factory.mktemp("fuzz")
    captions = folder / "captions.csv"
    captions.write_bytes(data)
    argv = ["--model", "toy", *(["--h_model", "clip=toy"] if "--h" in chosen else []), "--text_path", str(captions), "--save_path", str(folder / "out"),
            "--device", "cpu", *switches, "--dry_run"]
    for flag in chosen:
        argv += [flag, values.draw(FLAG_VALUES[flag], label=flag)]
    capsys.readouterr()
    try:
        generate_date.main(argv)
    except SystemExit as exit_info:
        assert exit_info.code == 2, (argv, exit_info.code)
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), (argv, err)
        event("refused")
    else:
        assert capsys.readouterr().out.startswith("would generate "), argv
        event("planned")
    assert sorted(os.listdir(folder)) == ["captions.csv"], argv  # nothing written, refused or not (dry run)
