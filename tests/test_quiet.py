"""C libraries' stderr lines: LiteRT's XNNPACK banner is held back from every command, other
lines (another thread's among them) still reach stderr."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

from deepkeys.device.quiet import captured_stderr

from conftest import MELODIES, MODELS, run_cli

BANNER = "Created TensorFlow Lite XNNPACK delegate"


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_generate_prints_no_xnnpack_banner(tmp_path):
    result = run_cli(
        "generate", MELODIES / "twinkle.mid", "--genre", "rock", "--out", tmp_path, "--no-wav"
    )
    assert result.returncode == 0, result.stderr
    assert BANNER not in result.stderr + result.stdout


def test_loading_a_generator_prints_nothing_at_the_fd():
    code = (
        "from deepkeys.device.generation.generator import Generator\n"
        "from deepkeys.device.generation.midifile import read_melody\n"
        f"g = Generator.from_card({str(MODELS / 'jazz.json')!r})\n"
        f"m = read_melody({str(MELODIES / 'twinkle.mid')!r})\n"
        "g.accompany(m.notes, m.n_steps, seed=0)\n"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_captured_lines_are_kept_or_dropped_at_the_fd_and_other_threads_keep_theirs():
    code = (
        "import os, threading\n"
        "from deepkeys.device.quiet import captured_stderr\n"
        "with captured_stderr(keep=lambda line: 'XNNPACK' not in line) as caught:\n"
        "    os.write(2, b'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n')\n"
        "    t = threading.Thread(target=lambda: os.write(2, b'another thread\\n'))\n"
        "    t.start(); t.join()\n"
        "    os.write(2, b'ERROR: a real problem\\n')\n"
        "print(len(caught.lines))\n"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3"
    assert result.stderr.splitlines() == ["another thread", "ERROR: a real problem"]


def test_an_exception_in_the_block_restores_fd_2():
    fd_target = os.readlink("/proc/self/fd/2")
    try:
        with captured_stderr():
            raise KeyError("x")
    except KeyError:
        pass
    assert os.readlink("/proc/self/fd/2") == fd_target
    done = threading.Event()
    with captured_stderr(keep=lambda line: False) as caught:

        def write_late() -> None:
            os.write(2, b"late\n")
            done.set()

        threading.Thread(target=write_late).start()
        done.wait(5)
    assert caught.lines == ["late"]
