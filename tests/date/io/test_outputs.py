import os

import pytest

from date.io.atomic import atomic_write
from date.io.outputs import folder_name, pending


def test_failed_write_leaves_no_file_and_no_temp(tmp_path):
    target = tmp_path / "0.png"

    def crash(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half an image")
        raise KeyboardInterrupt  # killed mid-write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(str(target), crash)
    assert os.listdir(tmp_path) == []


def test_completed_write_replaces_whole_file(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    atomic_write(str(target), lambda tmp: open(tmp, "w").write("new"))
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["a.txt"]


def test_pending_and_folder_name(tmp_path):
    (tmp_path / "1.png").write_bytes(b"x")
    (tmp_path / "2.png.tmp99").write_bytes(b"x")  # a temp file is not a finished image
    assert pending(str(tmp_path), [0, 1, 2]) == [0, 2]
    assert folder_name("DATE_CLIP", "DDIM", 50, 8.0, 6, "TEST") == "DATE_CLIP_scheduler_DDIM_steps_50_w_8.0_seed_6_name_TEST"
    assert folder_name("FIXED", "DDIM", 50, 8.0, 6, None) == "FIXED_scheduler_DDIM_steps_50_w_8.0_seed_6"
