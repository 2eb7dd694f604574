"""`deepkeys bench e2e` runs the rig and writes a well-formed table (figures are not judged)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from deepkeys.hil.jackd import JackServer

ROW = re.compile(r"^\| 128 \(2\.67 ms\) \| \d+/8 \| [\d.]+ \| [\d.]+ \| [\d.]+ \| 7\.33 \| (yes|no) \|$")


def test_bench_e2e_writes_a_markdown_table(hil_jack: JackServer, tmp_path: Path) -> None:
    out = tmp_path / "e2e.md"
    done = subprocess.run([sys.executable, "-m", "deepkeys.device.cli", "bench", "e2e",
                           "--period", "128", "--notes", "8", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = out.read_text().splitlines()
    assert lines[1].startswith("| JACK period (frames) | notes heard | p50 ms | p99 ms |")
    assert lines[2] == "|---|---|---|---|---|---|---|"
    assert ROW.match(lines[3]), lines[3]
    assert lines[3] in done.stdout


def test_bench_e2e_rejects_bad_input() -> None:
    done = subprocess.run([sys.executable, "-m", "deepkeys.device.cli", "bench", "e2e",
                           "--notes", "0"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.strip() == \
        "deepkeys: --notes must be at least 1, got 0"
