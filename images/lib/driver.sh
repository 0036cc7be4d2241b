# Driver checks that do not shape any image: the module's clippy run. Keyed
# into the driver stage (a change here re-runs it, never rebuilds the kernel).

# `make clippy` (CLIPPY=1) of the driver, out of tree in a scratch copy (the
# module build's objects would make it a no-op), failing the build on any
# rustc or clippy warning. The kernel's own lint set applies (rust_common_flags
# in its Makefile). With the KUnit suites (DMALAB_KUNIT=y; the images'
# module is built without them, guest-driver/Kbuild), so their code and the
# helpers only they call are checked too. Runs once per driver key: the
# marker is in the module's cache folder.
check_module_clippy() {
    [ -n "${MODULE_DIR:-}" ] && [ -f "$MODULE_DIR/dmalab.ko" ] || return 0
    [ -f "$MODULE_DIR/clippy.ok" ] && return 0
    command -v clippy-driver >/dev/null ||
        die "clippy-driver not found: the module's clippy check needs it (rustup component add clippy)"
    local dir=$MODULE_DIR/clippy log=$MODULE_DIR/clippy.log
    rm -rf "$dir"
    mkdir -p "$dir"
    copy_driver_sources "$dir"
    step "clippy on the driver module"
    run_logged "module clippy" "$log" kernel_make "$KERNEL_BUILD" M="$dir" CLIPPY=1 DMALAB_KUNIT=y modules
    if grep -qE '^(warning|error)(\[|:)' "$log"; then
        grep -E -A12 '^(warning|error)(\[|:)' "$log" | head -n 60 >&2
        die "the driver module has rustc/clippy warnings (full log: $log); fix them or allow them at the site with a reason"
    fi
    rm -rf "$dir"
    touch "$MODULE_DIR/clippy.ok"
}
