#!/usr/bin/env bash
# Runs INSIDE the emulated arm64 root (arm64/test-arm64.sh chroots into a fresh copy and
# runs this), as root on a fresh Pi would. Writes what it finds under /out:
#   install.log, pytest.log, generate/<genre>/*.mid (+ wav, png), daemon.log, status.txt,
#   doctor.txt, gpio.txt, timings.txt (every figure labelled emulated).
set -euo pipefail
OUT=/out
REPO=/opt/deepkeys
MELODIES=(ode_to_joy chorale_melody twinkle)
SEED=0
HOST_CPU=${HOST_CPU:-an x86_64 host}
cd "$REPO"
mkdir -p "$OUT"
: > "$OUT/timings.txt"

say() { printf '[arm64 chroot %(%H:%M:%S)T] %s\n' -1 "$*"; }
# phase NAME CMD...: run it, log how long it took (emulated), fail the run if it fails.
phase() {
    local name=$1 start=$SECONDS rc=0
    shift
    say "phase $name: $*"
    "$@" || rc=$?
    printf '%-10s %5d s (emulated: qemu-user aarch64 on %s, not a Pi figure)%s\n' \
        "$name" $((SECONDS - start)) "$HOST_CPU" "$([ $rc = 0 ] || echo "  FAILED rc=$rc")" \
        | tee -a "$OUT/timings.txt"
    return $rc
}

arch=$(uname -m)
say "uname -m: $arch; dpkg --print-architecture: $(dpkg --print-architecture); $(. /etc/os-release && echo "$PRETTY_NAME")"
[ "$arch" = aarch64 ] || { say "error: not aarch64"; exit 1; }
echo "$arch" > "$OUT/uname-m"
say "emulated CPU: QEMU_CPU=${QEMU_CPU:-max}; /proc/cpuinfo says: $(grep -m1 '^Model' /proc/cpuinfo | cut -d: -f2-)"

# No init runs here: systemctl is a stand-in that records and starts nothing; apt's
# maintainer scripts must not start services either (the usual chroot policy).
install -m 0755 "$REPO/arm64/systemctl-standin" /usr/local/sbin/systemctl
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d

# 1. The README's Pi install path: `sudo make install` in /opt/deepkeys (root here, so
# the Makefile's sudo is empty). apt (APT_DEVICE), the venv with the device extra (aarch64
# wheels, pyalsaaudio compiled), then `deepkeys install`: group, user, config, units.
install_pi() {
    make install 2>&1 | tee "$OUT/install.log"
    return "${PIPESTATUS[0]}"
}
phase install install_pi
# A second run changes nothing (each step checks before it acts).
.venv/bin/deepkeys install | tee "$OUT/install-again.log"
grep -q "nothing to do" "$OUT/install-again.log" || { say "error: a second install changed something"; exit 1; }
say "systemctl calls the install made: $(paste -sd';' /var/lib/systemctl-standin/calls.log)"
id deepkeys
# As on the Pi: the host extra is not there.
if .venv/bin/python -c "import tensorflow" 2>/dev/null; then
    say "error: tensorflow is importable in the device venv"; exit 1
fi
.venv/bin/pip list --format=freeze > "$OUT/pip-freeze.txt"

# 2. The device test subset: the whole suite with the device extra only. What needs the
# host extra (TensorFlow, music21), MMA, JACK, sshd or systemd-analyze skips itself with its
# reason (-rs lists them). pytest and pytest-timeout are the only additions (test runners).
tests() {
    .venv/bin/pip install -q pytest pytest-timeout
    .venv/bin/python -m pytest tests hil -p no:cacheprovider -q -rfEs --timeout 1200 \
        --junitxml="$OUT/pytest.xml" 2>&1 | tee "$OUT/pytest.log"
    return "${PIPESTATUS[0]}"
}
tests_rc=0
phase tests tests || tests_rc=$?

# 3. Generation in every genre the device lists, each bundled melody, the same seed as the
# x86 run that test-arm64.sh compares with.
generate_all() {
    local genre melody extra
    .venv/bin/deepkeys genres | cut -f1 > "$OUT/genres.txt" || return 1
    while read -r genre; do
        for melody in "${MELODIES[@]}"; do
            extra=(--no-wav)
            [ "$melody" = "${MELODIES[0]}" ] && extra=()  # one full run a genre: MIDI, WAV, PNG
            .venv/bin/deepkeys generate "device/melodies/$melody.mid" --genre "$genre" \
                --seed "$SEED" --out "$OUT/generate/$genre" "${extra[@]}" < /dev/null > /dev/null \
                || { say "error: generate $melody in $genre failed"; return 1; }
        done
        say "generated $genre: $(find "$OUT/generate/$genre" -type f -printf '%f ')"
    done < "$OUT/genres.txt"
}
phase generate generate_all

# 4. The daemon, started directly (systemd would: as user deepkeys, StateDirectory and
# RuntimeDirectory made for it, NOTIFY_SOCKET set) with the hardware-free config (sim MIDI,
# the null ALSA device, mock pins); READY=1 awaited on our own notify socket.
daemon() {
    install -d -o deepkeys -g deepkeys -m 0755 /var/lib/deepkeys || return 1
    install -d -o deepkeys -g deepkeys -m 0750 /run/deepkeys || return 1
    local config=/etc/deepkeys/hardware-free.toml
    .venv/bin/python -c "from deepkeys.device.config import hardware_free_config as h; \
print(h('/var/lib/deepkeys', '/run/deepkeys/control.sock'), end='')" > "$config" || return 1
    .venv/bin/python "$REPO/arm64/daemon_check.py" --config "$config" --out "$OUT"
}
phase daemon daemon

# 5. GPIO: lgpio (arm64 wheel) imports, and gpiozero's default pin factory is lgpio.
gpio() {
    .venv/bin/python "$REPO/arm64/gpio_check.py" 2>&1 | tee "$OUT/gpio.txt"
    return "${PIPESTATUS[0]}"
}
phase gpio gpio

if [ "$tests_rc" != 0 ]; then
    say "error: the device test subset failed (rc $tests_rc): see $OUT/pytest.log"
    exit 1
fi
say "all phases passed on $arch"
