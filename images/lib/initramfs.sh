# The initramfs: an uncompressed cpio (the guest kernel has no decompressors:
# decompressing in an emulated guest kernel is slow) with static busybox, the
# init script, the driver module and the user-space test tool when present.
# Built with the kernel's own gen_init_cpio, so no root and no device nodes on
# the host are needed.

# The busybox applets the init script and a person at the shell use; each is
# a symlink in the cpio (installing all of them at boot costs seconds).
BUSYBOX_APPLETS="sh ash mount umount cat echo ls mkdir rm cp mv ln grep sed cut tr
head tail wc sleep dmesg insmod rmmod lsmod modprobe reboot poweroff halt setsid
stat hexdump od dd cmp sync uname readlink find xargs printf test [ true false env
ps kill free uptime"

# guest-driver/tool, static (glibc with crt-static), so the initramfs needs no
# shared libraries; stripped and size-optimised, because every byte of the
# initramfs is copied by emulated guest kernel code at boot (about 3.5 s/MiB).
build_guest_tool() {
    [ -f "$REPO/guest-driver/tool/Cargo.toml" ] || return 0
    step "building dma24-tool (static)"
    # One target folder per checkout: worktrees share the cache, and with one
    # shared folder cargo left another checkout's binary in place (seen: an
    # initramfs with the tool of a different worktree).
    local target
    target=$CACHE/guest-tool/$(printf '%s' "$REPO" | sha256sum | cut -c1-12)/target
    run_logged "dma24-tool build" "$CACHE/guest-tool/build.log" \
        env RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR="$target" \
        CARGO_PROFILE_RELEASE_STRIP=true CARGO_PROFILE_RELEASE_OPT_LEVEL=s \
        CARGO_PROFILE_RELEASE_PANIC=abort CARGO_PROFILE_RELEASE_LTO=true \
        CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 CARGO_PROFILE_RELEASE_DEBUG=false \
        cargo build --release --locked --manifest-path "$REPO/Cargo.toml" -p dma24-tool \
        --target x86_64-unknown-linux-gnu
    GUEST_TOOL=$INITRAMFS_DIR/dma24-tool
    cp "$target/x86_64-unknown-linux-gnu/release/dma24-tool" "$GUEST_TOOL"
    if ldd "$GUEST_TOOL" 2>&1 | grep -q '=>'; then
        die "dma24-tool is not static: $(ldd "$GUEST_TOOL" | head -n 2 | tr '\n' ' ')"
    fi
}

build_initramfs() {
    INITRAMFS_DIR=$CACHE/initramfs/$INITRAMFS_KEY
    [ -f "$INITRAMFS_DIR/initramfs.cpio" ] && return 0
    rm -rf "$INITRAMFS_DIR"
    mkdir -p "$INITRAMFS_DIR" "$CACHE/guest-tool"
    build_guest_tool
    step "building the initramfs"
    dpkg -x "$BUSYBOX_DEB" "$INITRAMFS_DIR/busybox"
    local list=$INITRAMFS_DIR/files.txt a
    # Debug info is of no use in the guest and costs unpack time there.
    if [ -n "${MODULE_DIR:-}" ] && [ -f "$MODULE_DIR/dmalab.ko" ]; then
        strip --strip-debug -o "$INITRAMFS_DIR/dmalab.ko" "$MODULE_DIR/dmalab.ko"
    fi
    {
        echo "dir /bin 0755 0 0"
        echo "dir /sbin 0755 0 0"
        echo "dir /dev 0755 0 0"
        echo "nod /dev/console 0600 0 0 c 5 1"
        echo "dir /proc 0555 0 0"
        echo "dir /sys 0555 0 0"
        echo "dir /tmp 1777 0 0"
        echo "dir /lib 0755 0 0"
        echo "dir /lib/modules 0755 0 0"
        echo "file /init $IMAGES/initramfs/init 0755 0 0"
        echo "dir /etc 0755 0 0"
        echo "file /etc/fstab $IMAGES/initramfs/fstab 0644 0 0"
        echo "file /bin/busybox $INITRAMFS_DIR/busybox/usr/bin/busybox 0755 0 0"
        for a in $BUSYBOX_APPLETS; do
            echo "slink /bin/$a busybox 0777 0 0"
        done
        if [ -n "${MODULE_DIR:-}" ] && [ -f "$MODULE_DIR/dmalab.ko" ]; then
            echo "file /lib/modules/dmalab.ko $INITRAMFS_DIR/dmalab.ko 0644 0 0"
        fi
        if [ -n "${GUEST_TOOL:-}" ] && [ -f "$GUEST_TOOL" ]; then
            echo "file /bin/dma24-tool $GUEST_TOOL 0755 0 0"
        fi
    } >"$list"
    "$KERNEL_BUILD/usr/gen_init_cpio" "$list" >"$INITRAMFS_DIR/initramfs.cpio" ||
        die "gen_init_cpio failed on $list"
    rm -rf "$INITRAMFS_DIR/busybox"
}

publish_images() {
    local out=$1
    rm -rf "$out"
    mkdir -p "$out"
    cp "$KERNEL_OUT/vmlinux" "$KERNEL_OUT/bzImage" "$KERNEL_OUT/System.map" \
        "$KERNEL_OUT/kernel.config" "$out/"
    cp "$INITRAMFS_DIR/initramfs.cpio" "$out/initramfs.cpio"
    [ -f "${MODULE_DIR:-/nonexistent}/dmalab.ko" ] && cp "$MODULE_DIR/dmalab.ko" "$out/dmalab.ko"
    [ -f "${BUILTIN_DIR:-/nonexistent}/vmlinux" ] && cp "$BUILTIN_DIR/vmlinux" "$out/vmlinux-kunit"
    ln -sfn "$KERNEL_BUILD" "$out/kernel-build"
    ln -sfn "$KERNEL_SRC" "$out/kernel-src"
    {
        echo "kernel_key=$KERNEL_KEY"
        echo "driver_key=$DRIVER_KEY"
        echo "builtin_key=$BUILTIN_KEY"
        echo "initramfs_key=$INITRAMFS_KEY"
        echo "kernel_pkg=$KERNEL_PKG $KERNEL_PKG_VERSION"
        echo "rust_src=$RUST_SRC_PKG_VERSION"
        echo "busybox=$BUSYBOX_PKG_VERSION"
        echo "rustc=$(rustc -V)"
        echo "bindgen=$(bindgen --version)"
        echo "rust_lib_src=$RUST_LIB_SRC"
        echo "libclang_path=$LIBCLANG_PATH"
    } >"$out/manifest.txt"
    touch "$out/.done"
}
