"""SIGTERM stops a script as Ctrl-C does: its one line, no traceback, exit 143."""
import os
import signal
import subprocess
import sys
import time

import pytest

from date.io.errors import StoppedRun, exit_on_user_error
from tests.support.paths import REPO


def test_sigterm_is_an_interrupt_with_exit_143(capsys):
    @exit_on_user_error
    def main():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)  # interrupted long before

    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 143 and capsys.readouterr().err == "interrupted\n"
    assert signal.getsignal(signal.SIGTERM) is handler  # restored once main is done


def test_a_loop_that_says_how_far_it_got_keeps_its_line(capsys):
    @exit_on_user_error
    def main(signum):
        try:
            os.kill(os.getpid(), signum)
            time.sleep(10)
        except KeyboardInterrupt:  # as date/run/loop.py does
            raise StoppedRun("interrupted: 2 of 4 images are in out", 130) from None

    with pytest.raises(SystemExit) as exit_info:
        main(signal.SIGTERM)
    assert exit_info.value.code == 143 and capsys.readouterr().err == "interrupted: 2 of 4 images are in out\n"
    with pytest.raises(SystemExit) as exit_info:
        main(signal.SIGINT)  # Ctrl-C keeps its own code
    assert exit_info.value.code == 130 and capsys.readouterr().err == "interrupted: 2 of 4 images are in out\n"


def test_a_toy_run_killed_by_sigterm_says_how_far_it_got(tmp_path):
    save_path = tmp_path / "out"
    command = [sys.executable, "generate_date.py", "--model", "toy", "--h", "clip", "--h_model", "clip=toy",
               "--text_path", os.path.join("assets", "toy", "prompts.csv"), "--max_cnt", "200", "--bs", "1",
               "--steps", "10", "--skip_freq", "5", "--device", "cpu", "--threads", "1", "--save_path", str(save_path)]
    run = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(save_path.glob("*/0.png")) and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    run.send_signal(signal.SIGTERM)
    err = run.communicate(timeout=60)[1]
    last = err.strip().splitlines()[-1]
    assert run.returncode == 143, err[-2000:]
    assert "Traceback" not in err
    assert last.startswith("interrupted: ") and " of 200 images are in " in last and last.endswith(
        "run the same command again to resume")
