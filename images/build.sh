#!/usr/bin/env bash
# Builds everything the dmalab guest needs from Debian packages and crates:
# the kernel (vmlinux, bzImage, and a variant with the driver built in), the
# driver module, and an uncompressed busybox initramfs. Outputs go to a cache
# outside the repo, keyed by a hash of every input, so a second run with
# nothing changed only checks the keys.
#
#   images/build.sh [build]    build what is missing, print the output folder
#   images/build.sh keys       print the cache keys of every stage
#   images/build.sh versions   list the archive's versions of the pinned packages
#
# Environment: DMALAB_CACHE (default ~/.cache/dmalab), DMALAB_JOBS (make -j),
# DMALAB_REPO (the repo to read inputs from; tests point it at a copy).
set -euo pipefail

REPO=${DMALAB_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
IMAGES=$REPO/images
CACHE=${DMALAB_CACHE:-$HOME/.cache/dmalab}
JOBS=${DMALAB_JOBS:-$(nproc)}
T0=$(date +%s)

# shellcheck source=versions.env
. "$IMAGES/versions.env"
# shellcheck source=initramfs/initramfs.env
. "$IMAGES/initramfs/initramfs.env"
# shellcheck source=lib/common.sh
. "$IMAGES/lib/common.sh"
# shellcheck source=lib/tools.sh
. "$IMAGES/lib/tools.sh"
# shellcheck source=lib/kernel.sh
. "$IMAGES/lib/kernel.sh"
# shellcheck source=lib/driver.sh
. "$IMAGES/lib/driver.sh"
# shellcheck source=lib/initramfs.sh
. "$IMAGES/lib/initramfs.sh"

cmd=${1:-build}
case "$cmd" in
keys)
    compute_keys
    printf 'kernel %s\ndriver %s\nbuiltin %s\ninitramfs %s\nimages %s\n' \
        "$KERNEL_KEY" "$DRIVER_KEY" "$BUILTIN_KEY" "$INITRAMFS_KEY" "$IMAGES_KEY"
    ;;
versions)
    apt_private_update
    for p in "$KERNEL_PKG" rust-src; do
        apt_private policy "$p" | sed -n '1,12p'
    done
    echo "busybox (source, $BUSYBOX_SRC_SUITE):"
    apt_private showsrc busybox | awk '/^Version:/ {print "  " $2}' 
    ;;
build)
    mkdir -p "$CACHE"
    compute_keys
    out=$CACHE/images/$IMAGES_KEY
    if [ -f "$out/.done" ]; then
        ln -sfn "$IMAGES_KEY" "$CACHE/images/current"
        step "up to date: $out"
        echo "$out"
        exit 0
    fi
    # One build at a time per cache (the built-in stage relinks the shared tree).
    exec 9>"$CACHE/.lock"
    flock 9 || die "cannot lock $CACHE/.lock"
    check_disk_space
    ensure_host_packages
    ensure_bindgen
    fetch_debs
    build_kernel
    build_module
    check_module_clippy
    build_builtin_kernel
    build_initramfs
    publish_images "$out"
    ln -sfn "$IMAGES_KEY" "$CACHE/images/current"
    prune_cache
    step "done: $out"
    echo "$out"
    ;;
*)
    die "unknown command '$cmd': use build, keys or versions"
    ;;
esac
