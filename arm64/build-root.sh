#!/usr/bin/env bash
# Build, once, the pristine Debian 12 (bookworm) arm64 root that arm64/test-arm64.sh copies
# for each run: debootstrap --arch=arm64 (minbase plus what Raspberry Pi OS Lite ships and
# the README's install path assumes), its second stage run through qemu-user-static.
# Cached at $DEEPKEYS_ARM64_CACHE/root (default /var/cache/deepkeys-arm64/root); a second
# run finds it and does nothing. Delete that folder to rebuild. Run as root.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

need_root
stamp=$ARM64_ROOT/.deepkeys-root-ok
if [ -e "$stamp" ] && grep -qxF "include $ARM64_INCLUDE" "$stamp"; then
    log "root: cached at $ARM64_ROOT ($(head -1 "$stamp"))"
    exit 0
fi
[ -e "$stamp" ] && log "root: the package list changed since it was built: rebuilding"
host_tools
trap cleanup EXIT
binfmt_up

tmp=$ARM64_CACHE/root.partial
rm -rf "$tmp"
mkdir -p "$ARM64_CACHE/debs"
start=$SECONDS
log "root: debootstrap --arch=arm64 --variant=minbase $ARM64_SUITE into $tmp (emulated second stage)"
debootstrap --arch=arm64 --variant=minbase --include="$ARM64_INCLUDE" \
    --cache-dir="$ARM64_CACHE/debs" "$ARM64_SUITE" "$tmp" "$ARM64_MIRROR"
cat > "$tmp/etc/apt/sources.list" <<SOURCES
deb $ARM64_MIRROR $ARM64_SUITE main
deb $ARM64_MIRROR $ARM64_SUITE-updates main
deb http://deb.debian.org/debian-security $ARM64_SUITE-security main
SOURCES
echo deepkeys-arm64 > "$tmp/etc/hostname"
arch=$(chroot "$tmp" uname -m)
[ "$arch" = aarch64 ] || die "root: uname -m inside is $arch, not aarch64"
chroot "$tmp" dpkg --print-architecture | grep -qx arm64 || die "root: dpkg is not arm64"
printf 'built %s in %s s (emulated), uname -m %s\ninclude %s\n' "$(date -u +%FT%TZ)" \
    "$((SECONDS - start))" "$arch" "$ARM64_INCLUDE" > "$tmp/.deepkeys-root-ok"
rm -rf "$ARM64_ROOT"
mv "$tmp" "$ARM64_ROOT"
log "root: built in $((SECONDS - start)) s (emulated second stage): $ARM64_ROOT"
