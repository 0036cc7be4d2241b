# Helpers shared by the image build stages: progress, errors, cache keys.

step() { printf '[images %4ds] %s\n' "$(($(date +%s) - T0))" "$*" >&2; }
die() {
    printf 'images: error: %s\n' "$*" >&2
    exit 1
}

# A stable hash of files: each file's path relative to the repo and content.
# Missing files hash as absent, so adding one changes the key too.
hash_files() {
    local f
    for f in "$@"; do
        if [ -f "$f" ]; then
            printf '%s\n' "${f#"$REPO"/}"
            sha256sum <"$f"
        fi
    done | sha256sum | cut -c1-16
}

# Files of a source folder that are inputs (not build products), sorted.
# Symlinks count as the file they point at (guest-driver/src/regs.rs is the
# device model's register map): hashed and copied by content.
source_files() {
    [ -d "$1" ] || return 0
    find "$1" \( -type f -o -type l \) \( -name '*.rs' -o -name '*.c' -o -name '*.h' -o -name 'Kbuild' \
        -o -name 'Makefile' -o -name '*.toml' -o -name '*.sh' -o -name 'init' \
        -o -name '*.config' -o -name '*.patch' -o -name '*.env' -o -name '*.txt' \) \
        -not -path '*/target/*' -not -name '*.mod.c' | LC_ALL=C sort
}

# The driver's sources (not its build products, not the user-space tool).
driver_source_files() {
    source_files "$REPO/guest-driver" | grep -v "^$REPO/guest-driver/tool/"
}

# Copies the driver's sources into a folder, keeping their relative paths.
# Symlinks are copied as the file they point at (cp -L), so the copy holds
# the shared register map itself and builds on its own.
copy_driver_sources() {
    local f rel
    driver_source_files | while read -r f; do
        rel=${f#"$REPO/guest-driver/"}
        mkdir -p "$1/$(dirname "$rel")"
        cp -L "$f" "$1/$rel" || die "cannot copy $f (a dangling symlink?)"
    done
}

compute_keys() {
    local rustc_v
    rustc_v=$(rustc -V 2>/dev/null || echo "no rustc")
    KERNEL_KEY=$( {
        # Only what shapes the kernel: helpers (common.sh, tools.sh) are not keyed.
        hash_files "$IMAGES/versions.env" "$IMAGES/lib/kernel.sh"
        mapfile -t fs < <(source_files "$IMAGES/kernel"; source_files "$IMAGES/patches")
        hash_files "${fs[@]}"
        echo "$rustc_v"
    } | sha256sum | cut -c1-16)
    local driver_files
    # The user-space tool (guest-driver/tool) goes into the initramfs only.
    mapfile -t driver_files < <(driver_source_files)
    # guest-driver/src/regs.rs links to device-model/src/regs.rs: hashed by
    # content, so a register map change rebuilds the module.
    DRIVER_KEY=$( {
        echo "$KERNEL_KEY"
        hash_files "$IMAGES/lib/driver.sh" "${driver_files[@]}"
    } | sha256sum | cut -c1-16)
    BUILTIN_KEY=$(printf 'builtin %s\n' "$DRIVER_KEY" | sha256sum | cut -c1-16)
    local init_files
    mapfile -t init_files < <(source_files "$IMAGES/initramfs"; source_files "$REPO/guest-driver/tool")
    INITRAMFS_KEY=$( {
        echo "$DRIVER_KEY"
        hash_files "$IMAGES/lib/initramfs.sh" "${init_files[@]}"
    } | sha256sum | cut -c1-16)
    IMAGES_KEY=$(printf '%s %s %s\n' "$KERNEL_KEY" "$BUILTIN_KEY" "$INITRAMFS_KEY" |
        sha256sum | cut -c1-16)
}

check_disk_space() {
    local free_kb
    free_kb=$(df -Pk "$CACHE" | awk 'NR==2 {print $4}')
    if [ "${free_kb:-0}" -lt $((8 * 1024 * 1024)) ]; then
        die "disk full: $((free_kb / 1024)) MiB free under $CACHE, the build needs about 8 GiB; free space or set DMALAB_CACHE to a larger disk"
    fi
}

# Runs a long command with its output in a log, printing a progress line every
# 30 s and the log's tail if it fails.
run_logged() {
    local what=$1 log=$2
    shift 2
    local start=$SECONDS
    "$@" >"$log" 2>&1 &
    local pid=$!
    local next=$((start + 30))
    while kill -0 "$pid" 2>/dev/null; do
        sleep 1
        if ((SECONDS >= next)); then
            step "$what: $((SECONDS - start)) s, $(wc -l <"$log") log lines"
            next=$((next + 30))
        fi
    done
    if ! wait "$pid"; then
        tail -n 40 "$log" >&2
        die "$what failed after $((SECONDS - start)) s (full log: $log)"
    fi
    step "$what: done in $((SECONDS - start)) s"
}

# Keeps the newest $DMALAB_CACHE_KEEP (default 2) entries of each stage
# folder: a kernel entry is 2.2 GB. Several checkouts sharing one cache (a
# team, parallel worktrees) set it higher so they do not evict each other.
prune_cache() {
    local d keep="${DMALAB_CACHE_KEEP:-2}"
    case "$keep" in '' | *[!0-9]* | 0) die "DMALAB_CACHE_KEEP must be a whole number >= 1, not '$keep'" ;; esac
    for d in kernel module builtin initramfs images; do
        [ -d "$CACHE/$d" ] || continue
        find "$CACHE/$d" -mindepth 1 -maxdepth 1 -type d -printf '%T@ %p\n' | sort -rn |
            tail -n +$((keep + 1)) | cut -d' ' -f2- | while read -r old; do
            [ "$(readlink -f "$CACHE/images/current")" = "$old" ] && continue
            rm -rf "$old"
        done
    done
}
