#!/usr/bin/env bash
# `make test-arm64`: the firmware on the Pi's own architecture, under emulation. As root:
#   1. binfmt_misc mounted if it is not, qemu-user-static's aarch64 interpreter registered
#      if it is not (both undone on exit, and only what this did);
#   2. the pristine Debian 12 arm64 root built once (arm64/build-root.sh, cached under
#      /var/cache/deepkeys-arm64, or $DEEPKEYS_ARM64_CACHE);
#   3. a fresh copy of it for this run, the checkout (git ls-files) copied to /opt/deepkeys,
#      /proc, /sys and /dev mounted, apt's .debs and pip's downloads cached across runs;
#   4. arm64/run-tests.sh inside: make install, the device test subset, generate in every
#      genre, the daemon to READY with status and doctor, lgpio and gpiozero;
#   5. the same generations on x86 with the repo's .venv, and the notes compared
#      (arm64/compare_notes.py).
# Every duration printed is emulated (qemu-user on this x86 host), never a Pi figure.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

need_root
X86_VENV=${X86_VENV:-$repo/.venv}
[ -x "$X86_VENV/bin/deepkeys" ] || die "no x86 venv at $X86_VENV (make deps-device first)"
results=$ARM64_CACHE/last-run
host_cpu="$(nproc)-core $(uname -m) ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
t0=$SECONDS
timing() { printf '%-10s %5d s (emulated: qemu-user aarch64 on %s, not a Pi figure)\n' "$1" "$2" "$host_cpu"; }

# Processes still running inside the run root (a daemon left by a failed step): ours.
kill_leftovers() {
    local p
    [ -d "$ARM64_RUN" ] || return 0
    for p in /proc/[0-9]*; do
        if [ "$(readlink "$p/root" 2>/dev/null)" = "$ARM64_RUN" ]; then
            kill -KILL "${p#/proc/}" 2>/dev/null || true
        fi
    done
}
on_exit() {
    local rc=$?
    kill_leftovers
    cleanup
    log "total $((SECONDS - t0)) s; exit $rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

host_tools
binfmt_up

# 2. The pristine root, once.
start=$SECONDS
"$here/build-root.sh"
build_s=$((SECONDS - start))

# 3. A fresh Pi for this run.
start=$SECONDS
rm -rf "$ARM64_RUN" "$results"
mkdir -p "$results/arm64" "$ARM64_CACHE/pip"
cp -a "$ARM64_ROOT" "$ARM64_RUN"
cp -L /etc/resolv.conf "$ARM64_RUN/etc/resolv.conf"
# This host's own trust anchors (a TLS-inspecting proxy's CA, say) go in too, or pip cannot
# reach PyPI from inside; a real Pi needs none of this.
tls_env=()
if compgen -G "/usr/local/share/ca-certificates/*.crt" > /dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$ARM64_RUN/usr/local/share/ca-certificates/"
    cp -L /etc/ssl/certs/ca-certificates.crt "$ARM64_RUN/etc/ssl/certs/ca-certificates.crt"
    bundle=/etc/ssl/certs/ca-certificates.crt
    tls_env=("PIP_CERT=$bundle" "SSL_CERT_FILE=$bundle" "REQUESTS_CA_BUNDLE=$bundle")
    log "host CAs copied in: $(cd /usr/local/share/ca-certificates && echo ./*.crt)"
fi
mkdir -p "$ARM64_RUN/opt/deepkeys"
(cd "$repo" && git ls-files -z -co --exclude-standard \
    | tar --null -T - --ignore-failed-read -cf - ) | tar -xf - -C "$ARM64_RUN/opt/deepkeys"
# pip keeps its downloads, never a wheel it built: pyalsaaudio is compiled on every run.
rm -rf "$ARM64_CACHE/pip/wheels"
chroot_mounts "$ARM64_RUN"
fake_cpuinfo "$ARM64_RUN"
bind_mount "$ARM64_CACHE/debs" "$ARM64_RUN/var/cache/apt/archives"
bind_mount "$ARM64_CACHE/pip" "$ARM64_RUN/root/.cache/pip"
bind_mount "$results/arm64" "$ARM64_RUN/out"
copy_s=$((SECONDS - start))
log "fresh root at $ARM64_RUN ($copy_s s); inside: uname -m = $(chroot "$ARM64_RUN" uname -m), qemu CPU $ARM64_CPU"

# 4. Inside, as on a fresh Pi.
start=$SECONDS
rc=0
chroot "$ARM64_RUN" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb HOST_CPU="$host_cpu" \
    PIP_DEFAULT_TIMEOUT=180 QEMU_CPU="$ARM64_CPU" "${tls_env[@]}" \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    bash /opt/deepkeys/arm64/run-tests.sh || rc=$?
inside_s=$((SECONDS - start))
kill_leftovers
unmount_all

# 5. The same generations on x86, then the notes compared.
start=$SECONDS
mkdir -p "$results/x86"
melodies=(ode_to_joy chorale_melody twinkle)
notes_rc=0
if [ -s "$results/arm64/genres.txt" ]; then
    while read -r genre; do
        for melody in "${melodies[@]}"; do
            "$X86_VENV/bin/deepkeys" generate "$repo/device/melodies/$melody.mid" \
                --genre "$genre" --seed 0 --out "$results/x86/$genre" --no-wav < /dev/null > /dev/null
        done
    done < "$results/arm64/genres.txt"
    "$X86_VENV/bin/python" "$here/compare_notes.py" "$results/arm64/generate" "$results/x86" \
        | tee "$results/notes-compare.txt" || notes_rc=$?
else
    log "no genres listed on arm64 (generation did not run)"
    notes_rc=1
fi
x86_s=$((SECONDS - start))

echo
echo "== make test-arm64: ran on $(cat "$results/arm64/uname-m" 2>/dev/null || echo '?') (uname -m inside the root), host $host_cpu"
echo "   durations, all EMULATED (qemu-user), not Raspberry Pi figures:"
{
    timing root-build "$build_s"
    timing root-copy "$copy_s"
    timing chroot "$inside_s"
    cat "$results/arm64/timings.txt" 2>/dev/null || true
    timing x86-notes "$x86_s"
} | sed 's/^/   /' | tee "$results/timings.txt"
echo "   results: $results"
[ "$rc" = 0 ] || die "inside the arm64 root: failed (rc $rc)"
[ "$notes_rc" = 0 ] || die "notes differ between arm64 and x86 (see $results/notes-compare.txt)"
log "PASS: arm64 (aarch64 under qemu-user): install, device tests, generate, daemon, gpio; notes identical to x86"
