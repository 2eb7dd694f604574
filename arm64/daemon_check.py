"""Inside the emulated arm64 root: start ``deepkeys run`` as systemd's unit would (user
deepkeys with the audio and gpio groups, NOTIFY_SOCKET set, the unit's environment), wait
for READY=1 on our own notify socket, then ask ``deepkeys status`` and ``deepkeys doctor``
and stop it with SIGTERM. Writes daemon.log, status.txt and doctor.txt under --out. Every
duration printed is emulated (qemu-user), never a Pi figure."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

DEEPKEYS = "/opt/deepkeys/.venv/bin/deepkeys"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--ready-timeout", type=float, default=600.0)
    args = ap.parse_args()

    notify_path = "/run/deepkeys/notify.sock"
    if os.path.exists(notify_path):
        os.unlink(notify_path)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    os.chmod(notify_path, 0o666)
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": "/var/lib/deepkeys",
        "NOTIFY_SOCKET": notify_path,
        "PYTHONUNBUFFERED": "1",
        "DEEPKEYS_PUBLISH_SPOOL": "/var/lib/deepkeys/publish",
        # the emulated CPU (test-arm64.sh sets it), for the daemon as for everything else
        **{k: v for k, v in os.environ.items() if k == "QEMU_CPU"},
    }
    start = time.monotonic()
    with open(args.out / "daemon.log", "w") as log:
        proc = subprocess.Popen(
            [DEEPKEYS, "run", "--config", args.config],
            user="deepkeys",
            group="deepkeys",
            extra_groups=["audio", "gpio"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd="/",
        )
    ok = False
    try:
        notify.settimeout(1.0)
        ready = None
        while time.monotonic() - start < args.ready_timeout and proc.poll() is None:
            try:
                msg = notify.recv(4096).decode(errors="replace")
            except TimeoutError:
                continue
            if "READY=1" in msg.split("\n"):
                ready = time.monotonic() - start
                break
        if ready is None:
            print(f"daemon: no READY=1 (exit status {proc.poll()}); daemon.log:")
            print((args.out / "daemon.log").read_text()[-3000:])
            return 1
        print(f"daemon: READY=1 after {ready:.1f} s (emulated: qemu-user, not a Pi figure)")
        status = subprocess.run(
            [DEEPKEYS, "status", "--config", args.config], capture_output=True, text=True
        )
        (args.out / "status.txt").write_text(status.stdout + status.stderr)
        print(f"deepkeys status: exit {status.returncode}")
        print(status.stdout + status.stderr, end="")
        doctor = subprocess.run(
            [DEEPKEYS, "doctor", "--config", args.config], capture_output=True, text=True
        )
        (args.out / "doctor.txt").write_text(doctor.stdout + doctor.stderr)
        print(f"deepkeys doctor: exit {doctor.returncode}")
        print(doctor.stdout + doctor.stderr, end="")
        lines = doctor.stdout.splitlines()
        daemon_row = [line for line in lines if line.startswith("daemon ")]
        ok = (
            status.returncode == 0
            and "state" in status.stdout
            and doctor.returncode == 0
            and bool(daemon_row)
            and " ok " in f" {daemon_row[0]} "
        )
    finally:
        if proc.poll() is None:
            proc.terminate()  # SIGTERM, as systemctl stop sends
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        print(f"daemon: stopped by SIGTERM, exit status {proc.returncode}")
        notify.close()
        os.unlink(notify_path)
    if proc.returncode != 0:
        ok = False
    print("daemon check:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
