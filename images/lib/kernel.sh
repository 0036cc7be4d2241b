# Kernel stages: source + patches, config, the main build (vmlinux, bzImage,
# the tree out-of-tree modules build against), the driver module, and a
# second kernel with the driver built in (KUnit suites run at boot, with no
# user space).

kernel_make() {
    make -C "$KERNEL_SRC" O="$1" -j"$JOBS" LIBCLANG_PATH="$LIBCLANG_PATH" \
        RUST_LIB_SRC="$RUST_LIB_SRC" "${@:2}"
}

prepare_kernel_source() {
    KERNEL_SRC=$CACHE/kernel/$KERNEL_KEY/src
    [ -f "$CACHE/kernel/$KERNEL_KEY/src.ok" ] && return 0
    rm -rf "$KERNEL_SRC" "$CACHE/kernel/$KERNEL_KEY/deb"
    mkdir -p "$CACHE/kernel/$KERNEL_KEY/deb"
    step "extracting $KERNEL_PKG $KERNEL_PKG_VERSION"
    dpkg -x "$KERNEL_DEB" "$CACHE/kernel/$KERNEL_KEY/deb"
    local tarball
    tarball=$(ls "$CACHE/kernel/$KERNEL_KEY/deb/usr/src/$KERNEL_PKG".tar.* | head -n1)
    mkdir -p "$KERNEL_SRC"
    tar -xf "$tarball" -C "$KERNEL_SRC" --strip-components=1
    rm -rf "$CACHE/kernel/$KERNEL_KEY/deb"
    local p
    for p in "$IMAGES"/patches/*.patch; do
        [ -f "$p" ] || continue
        step "applying $(basename "$p")"
        patch -d "$KERNEL_SRC" -p1 --forward --batch --quiet <"$p" ||
            die "patch $(basename "$p") does not apply to $KERNEL_PKG $KERNEL_PKG_VERSION: refresh it"
    done
    touch "$CACHE/kernel/$KERNEL_KEY/src.ok"
}

# tinyconfig + images/kernel/dmalab.config, then a check that every line of the
# fragment survived (Kconfig silently drops options whose dependencies fail).
configure_kernel() {
    local build=$1 fragment=$IMAGES/kernel/dmalab.config line name
    kernel_make "$build" tinyconfig >/dev/null
    "$KERNEL_SRC/scripts/kconfig/merge_config.sh" -m -O "$build" "$build/.config" "$fragment" >/dev/null
    kernel_make "$build" olddefconfig >/dev/null
    while read -r line; do
        case "$line" in
        CONFIG_*=*)
            grep -qxF "$line" "$build/.config" || die "kernel config: '$line' from $fragment did not stick (its dependencies are off)"
            ;;
        "# CONFIG_"*" is not set")
            name=${line#"# "}
            name=${name%% *}
            ! grep -q "^$name=" "$build/.config" || die "kernel config: $name is still on although $fragment turns it off"
            ;;
        esac
    done <"$fragment"
    kernel_make "$build" rustavailable >"$build/rustavailable.log" 2>&1 ||
        die "the kernel's Rust support is not available: $(tail -n 3 "$build/rustavailable.log" | tr '\n' ' ')"
}

build_kernel() {
    prepare_kernel_source
    KERNEL_BUILD=$CACHE/kernel/$KERNEL_KEY/build
    KERNEL_OUT=$CACHE/kernel/$KERNEL_KEY/out
    [ -f "$CACHE/kernel/$KERNEL_KEY/build.ok" ] && return 0
    mkdir -p "$KERNEL_BUILD"
    step "configuring the kernel"
    configure_kernel "$KERNEL_BUILD"
    step "building the kernel (about 6 min on 2 cores)"
    run_logged "kernel build" "$CACHE/kernel/$KERNEL_KEY/build.log" \
        kernel_make "$KERNEL_BUILD" vmlinux bzImage modules
    # The tree's vmlinux is relinked by the built-in stage: keep this one.
    mkdir -p "$KERNEL_OUT"
    cp "$KERNEL_BUILD/vmlinux" "$KERNEL_BUILD/arch/x86/boot/bzImage" "$KERNEL_BUILD/System.map" \
        "$KERNEL_OUT/"
    cp "$KERNEL_BUILD/.config" "$KERNEL_OUT/kernel.config"
    touch "$CACHE/kernel/$KERNEL_KEY/build.ok"
}

# Builds guest-driver/ out of tree in a scratch copy (the repo stays clean).
build_module() {
    MODULE_DIR=$CACHE/module/$DRIVER_KEY
    [ -f "$MODULE_DIR/dmalab.ko" ] && return 0
    if [ ! -f "$REPO/guest-driver/Kbuild" ]; then
        step "no guest-driver/Kbuild yet: skipping the module"
        return 0
    fi
    rm -rf "$MODULE_DIR"
    mkdir -p "$MODULE_DIR/src"
    copy_driver_sources "$MODULE_DIR/src"
    step "building the driver module"
    run_logged "module build" "$MODULE_DIR/build.log" \
        kernel_make "$KERNEL_BUILD" M="$MODULE_DIR/src" modules
    cp "$MODULE_DIR/src/dmalab.ko" "$MODULE_DIR/dmalab.ko"
}

# The driver compiled into the kernel under drivers/misc/dmalab, enabled by a
# make variable (DMALAB_BUILTIN=y) so the main configuration never changes:
# built in the main tree, only the driver and the final link are redone. (A
# copy of the tree would rebuild everything: objtool's absolute paths change.)
build_builtin_kernel() {
    BUILTIN_DIR=$CACHE/builtin/$BUILTIN_KEY
    [ -f "$BUILTIN_DIR/vmlinux" ] && return 0
    if [ ! -f "$REPO/guest-driver/Kbuild" ]; then
        step "no guest-driver/Kbuild yet: skipping the built-in kernel"
        return 0
    fi
    rm -rf "$BUILTIN_DIR"
    mkdir -p "$BUILTIN_DIR"
    local dir=$KERNEL_SRC/drivers/misc/dmalab
    rm -rf "$dir"
    mkdir -p "$dir"
    copy_driver_sources "$dir"
    # The driver's own Kbuild builds it in, with its KUnit suites; the
    # out-of-tree Makefile next to it has no place in the tree.
    rm -f "$dir/Makefile"
    grep -q 'DMALAB_BUILTIN' "$KERNEL_SRC/drivers/misc/Makefile" ||
        echo 'obj-$(DMALAB_BUILTIN) += dmalab/' >>"$KERNEL_SRC/drivers/misc/Makefile"
    run_logged "built-in kernel build" "$BUILTIN_DIR/build.log" \
        kernel_make "$KERNEL_BUILD" DMALAB_BUILTIN=y vmlinux
    cp "$KERNEL_BUILD/vmlinux" "$BUILTIN_DIR/vmlinux"
}
