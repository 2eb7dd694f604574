# shellcheck shell=bash disable=SC2034  # the variables are for the scripts that source it
# Shared by arm64/build-root.sh and arm64/test-arm64.sh (sourced, never run): where the
# cache lives, binfmt_misc set up and undone, and mounts that are always unmounted.

# The cache: the pristine Debian 12 arm64 root, apt's .debs, pip's downloads and wheels.
ARM64_CACHE=${DEEPKEYS_ARM64_CACHE:-/var/cache/deepkeys-arm64}
ARM64_ROOT=$ARM64_CACHE/root           # pristine: debootstrap's output, never installed into
ARM64_RUN=$ARM64_CACHE/run             # a fresh copy of it for each run ("a fresh Pi")
ARM64_SUITE=bookworm
ARM64_MIRROR=${DEEPKEYS_ARM64_MIRROR:-http://deb.debian.org/debian}
# What debootstrap adds to minbase: what a Raspberry Pi OS Lite image has and the README's
# Pi install path assumes (python3, git, make, sudo; systemd's tools, journalctl and
# systemd-analyze; OpenSSH, client and server, which maintenance and deploy use), plus
# ca-certificates for PyPI. The root is rebuilt when this list changes.
ARM64_INCLUDE=python3,git,make,sudo,ca-certificates,procps,systemd,openssh-client,openssh-server

# The CPU qemu emulates: a Raspberry Pi 5's Cortex-A76 (its HWCAPs, so XNNPACK picks the
# kernels it would pick there; "cortex-a72" is a Pi 4). qemu-user 7.2 passes the x86 host's
# /proc/cpuinfo through, where LiteRT's cpuinfo library finds no ARM core and crashes
# (SIGSEGV in Interpreter()), so fake_cpuinfo mounts a Pi 5's over it.
ARM64_CPU=${DEEPKEYS_ARM64_CPU:-cortex-a76}

BINFMT_DIR=/proc/sys/fs/binfmt_misc
BINFMT_NAME=qemu-aarch64
# Debian's qemu-user-static registration line (/usr/lib/binfmt.d/qemu-aarch64.conf); F:
# the kernel opens the interpreter now, so it works inside the chroot without a copy.
BINFMT_CONF=/usr/lib/binfmt.d/qemu-aarch64.conf

_binfmt_mounted_by_us=0
_binfmt_registered_by_us=0
_mounted_by_us=()

log() { printf '[arm64 %(%H:%M:%S)T] %s\n' -1 "$*"; }
die() { log "error: $*" >&2; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "run as root (debootstrap, binfmt_misc, chroot, mounts)"; }

host_tools() {
    local missing=()
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    [ -e "$BINFMT_CONF" ] || missing+=(qemu-user-static)
    if [ ${#missing[@]} -gt 0 ]; then
        log "host: apt-get install ${missing[*]}"
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
}

# Mount binfmt_misc if it is not, and register the aarch64 interpreter if it is not;
# binfmt_undo takes back exactly what this did.
binfmt_up() {
    if ! mountpoint -q "$BINFMT_DIR"; then
        mount -t binfmt_misc binfmt_misc "$BINFMT_DIR"
        _binfmt_mounted_by_us=1
        log "binfmt: mounted $BINFMT_DIR"
    fi
    if [ -e "$BINFMT_DIR/$BINFMT_NAME" ]; then
        log "binfmt: $BINFMT_NAME already registered ($(head -1 "$BINFMT_DIR/$BINFMT_NAME")); left as it is"
    else
        grep -v '^#' "$BINFMT_CONF" | head -1 > "$BINFMT_DIR/register"
        _binfmt_registered_by_us=1
        log "binfmt: registered $BINFMT_NAME from $BINFMT_CONF"
    fi
    grep -q '^enabled' "$BINFMT_DIR/$BINFMT_NAME" || die "binfmt: $BINFMT_NAME is disabled"
}

binfmt_undo() {
    if [ "$_binfmt_registered_by_us" = 1 ] && [ -e "$BINFMT_DIR/$BINFMT_NAME" ]; then
        echo -1 > "$BINFMT_DIR/$BINFMT_NAME" && log "binfmt: unregistered $BINFMT_NAME"
        _binfmt_registered_by_us=0
    fi
    if [ "$_binfmt_mounted_by_us" = 1 ]; then
        umount "$BINFMT_DIR" && log "binfmt: unmounted $BINFMT_DIR"
        _binfmt_mounted_by_us=0
    fi
}

# bind_mount SRC DEST [ro]: remembered, so unmount_all takes it down (last first).
bind_mount() {
    mkdir -p "$2"
    mount --bind "$1" "$2"
    _mounted_by_us+=("$2")
    if [ "${3:-}" = ro ]; then mount -o remount,bind,ro "$2"; fi
}

# The kernel file systems a chroot needs: /proc, /sys, /dev (+ pts, shm).
chroot_mounts() {
    local root=$1
    mkdir -p "$root/proc" "$root/sys" "$root/dev"
    mount -t proc proc "$root/proc"; _mounted_by_us+=("$root/proc")
    mount -t sysfs sysfs "$root/sys"; _mounted_by_us+=("$root/sys")
    bind_mount /dev "$root/dev"
    mount -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts" 2>/dev/null \
        && _mounted_by_us+=("$root/dev/pts")
    mkdir -p "$root/dev/shm"
    mount -t tmpfs tmpfs "$root/dev/shm" && _mounted_by_us+=("$root/dev/shm")
}

# fake_cpuinfo ROOT: a Raspberry Pi 5's /proc/cpuinfo (Cortex-A76 cores, as many as this
# host has, so it agrees with /sys) bind-mounted over the chroot's.
fake_cpuinfo() {
    local root=$1 file=$ARM64_CACHE/cpuinfo i
    for ((i = 0; i < $(nproc); i++)); do
        printf 'processor\t: %d\nBogoMIPS\t: 108.00\n' "$i"
        printf 'Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\n'
        printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: 0xd0b\nCPU revision\t: 1\n\n'
    done > "$file"
    printf 'Revision\t: d04170\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0 (emulated)\n' >> "$file"
    mount --bind "$file" "$root/proc/cpuinfo"
    _mounted_by_us+=("$root/proc/cpuinfo")
}

unmount_all() {
    local i
    for ((i = ${#_mounted_by_us[@]} - 1; i >= 0; i--)); do
        umount "${_mounted_by_us[i]}" 2>/dev/null || umount -l "${_mounted_by_us[i]}" \
            || log "warning: could not unmount ${_mounted_by_us[i]}"
    done
    _mounted_by_us=()
}

cleanup() {
    unmount_all
    binfmt_undo
}
