# The initramfs: an uncompressed cpio (the guest kernel has no decompressors:
# decompressing in an emulated guest kernel is slow) with a small static
# busybox built from source, the init script, the driver module and the
# user-space test tool when present; at most INITRAMFS_BUDGET_BYTES (a
# warning here, a failing test in ci/tests/initramfs_budget.rs).
# Built with the kernel's own gen_init_cpio, so no root and no device nodes on
# the host are needed.

# The busybox applets the init script and a person at the shell use; every
# one must be in initramfs/busybox.config (checked after the build). Only
# /bin/sh is a link: with FEATURE_SH_STANDALONE the shell runs applets by
# name without a PATH lookup, and each link costs cpio bytes.
BUSYBOX_APPLETS="sh ash mount umount cat echo printf ls mkdir rm cp mv ln grep head tail
wc sleep dmesg insmod rmmod lsmod reboot poweroff halt setsid sync uname
test [ true false env kill"

# Headers of the kernel's user API for musl-gcc, which has only musl's own:
# links to the host's linux-libc-dev (linux/, asm/, asm-generic/).
musl_kernel_headers() {
    local d=$CACHE/busybox/kernel-headers
    mkdir -p "$d"
    ln -sfn /usr/include/linux "$d/linux"
    ln -sfn /usr/include/asm-generic "$d/asm-generic"
    ln -sfn "/usr/include/$(gcc -dumpmachine)/asm" "$d/asm"
    echo "$d"
}

# busybox from Debian's source package, with only initramfs/busybox.config's
# applets, static with musl: an eighth of Debian's busybox-static (2 MiB,
# glibc, every applet). -z noseparate-code: one R+X segment instead of three
# page-aligned ones (4 KB less padding). Cached on its own key (source
# version, fragment, compiler), so an init script change does not rebuild it.
build_busybox() {
    local fragment=$IMAGES/initramfs/busybox.config key dir src line n
    key=$( {
        echo "$BUSYBOX_SRC_VERSION"
        sha256sum <"$fragment"
        declare -f build_busybox musl_kernel_headers
        musl-gcc -dumpversion 2>/dev/null
    } | sha256sum | cut -c1-16)
    dir=$CACHE/busybox/$key
    BUSYBOX_BIN=$dir/busybox
    [ -f "$BUSYBOX_BIN" ] && return 0
    command -v musl-gcc >/dev/null || die "musl-gcc is missing: install musl-tools (sudo apt-get install musl-tools)"
    rm -rf "$dir"
    mkdir -p "$dir"
    src=$dir/src
    step "unpacking busybox $BUSYBOX_SRC_VERSION (Debian source package)"
    dpkg-source --no-check -x "$BUSYBOX_DSC" "$src" >"$dir/unpack.log" 2>&1 ||
        die "dpkg-source -x $BUSYBOX_DSC failed: $(tail -n 2 "$dir/unpack.log" | tr '\n' ' ')"
    # allnoconfig, then the fragment's lines, then oldconfig for what they imply.
    make -C "$src" allnoconfig >"$dir/config.log" 2>&1 || die "busybox allnoconfig failed (log: $dir/config.log)"
    while IFS= read -r line; do
        case "$line" in CONFIG_*=*) ;; *) continue ;; esac
        n=${line%%=*}
        sed -i "/^# $n is not set\$/d; /^$n=/d" "$src/.config"
        echo "$line" >>"$src/.config"
    done <"$fragment"
    (yes "" || true) | make -C "$src" oldconfig >>"$dir/config.log" 2>&1 || die "busybox oldconfig failed (log: $dir/config.log)"
    while IFS= read -r line; do
        case "$line" in CONFIG_*=*) ;; *) continue ;; esac
        grep -qxF "$line" "$src/.config" || die "busybox config: '$line' from $fragment did not stick"
    done <"$fragment"
    run_logged "busybox build (musl, static)" "$dir/build.log" \
        make -C "$src" -j"$JOBS" CC=musl-gcc EXTRA_CFLAGS="-isystem $(musl_kernel_headers)" \
        EXTRA_LDFLAGS="-Wl,-z,noseparate-code" busybox
    cp "$src/busybox" "$BUSYBOX_BIN"
    rm -rf "$src"
    local a missing=()
    for a in $BUSYBOX_APPLETS; do
        "$BUSYBOX_BIN" --list | grep -qxF -- "$a" || missing+=("$a")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        rm -f "$BUSYBOX_BIN"
        die "busybox lacks applets the initramfs links: ${missing[*]}; enable them in $fragment"
    fi
    step "busybox: $(stat -c %s "$BUSYBOX_BIN") bytes"
}

# guest-driver/tool, static and as small as Rust makes it, because every byte
# of the initramfs is copied by emulated guest kernel code at boot (about
# 3 s/MiB on PVM). Tried in order, first that builds wins:
#   1. musl, std rebuilt with panic=immediate-abort (-Zbuild-std through
#      RUSTC_BOOTSTRAP=1 on the stable toolchain: needs rustup's rust-src):
#      about 55 KB. A panic then aborts without a message.
#   2. musl with the prebuilt std: about 380 KB.
#   3. glibc with crt-static: about 1.1 MiB.
# All with opt-level=z, LTO, one codegen unit, stripped.
build_guest_tool() {
    [ -f "$REPO/guest-driver/tool/Cargo.toml" ] || return 0
    # One target folder per checkout: worktrees share the cache, and with one
    # shared folder cargo left another checkout's binary in place (seen: an
    # initramfs with the tool of a different worktree).
    local target musl=x86_64-unknown-linux-musl how=""
    target=$CACHE/guest-tool/$(printf '%s' "$REPO" | sha256sum | cut -c1-12)/target
    local profile=(CARGO_PROFILE_RELEASE_STRIP=true CARGO_PROFILE_RELEASE_OPT_LEVEL=z
        CARGO_PROFILE_RELEASE_LTO=true
        CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 CARGO_PROFILE_RELEASE_DEBUG=false
        CARGO_TARGET_DIR="$target")
    local build=(cargo build --release --manifest-path "$REPO/Cargo.toml" -p dma24-tool)
    if ! rustup target list --installed 2>/dev/null | grep -qx "$musl"; then
        step "adding the Rust target $musl (rustup)"
        rustup target add "$musl" >"$CACHE/guest-tool/rustup.log" 2>&1 || true
    fi
    if rustup target list --installed 2>/dev/null | grep -qx "$musl"; then
        if ! rustup component list --installed 2>/dev/null | grep -q '^rust-src'; then
            rustup component add rust-src >>"$CACHE/guest-tool/rustup.log" 2>&1 || true
        fi
        step "building dma24-tool (musl, std with panic=immediate-abort)"
        if env "${profile[@]}" RUSTC_BOOTSTRAP=1 \
            RUSTFLAGS="-C relocation-model=static -Zunstable-options -Cpanic=immediate-abort" \
            "${build[@]}" --target "$musl" -Z build-std=std,panic_abort \
            >"$CACHE/guest-tool/build.log" 2>&1; then
            how="musl, build-std, panic=immediate-abort"
        else
            step "that failed ($(grep -m1 '^error' "$CACHE/guest-tool/build.log" || tail -n1 "$CACHE/guest-tool/build.log")); building with the prebuilt musl std"
            run_logged "dma24-tool build (musl)" "$CACHE/guest-tool/build.log" \
                env "${profile[@]}" CARGO_PROFILE_RELEASE_PANIC=abort RUSTFLAGS="-C relocation-model=static" \
                "${build[@]}" --locked --target "$musl"
            how="musl"
        fi
        GUEST_TOOL_BUILT=$target/$musl/release/dma24-tool
    else
        step "no $musl target (rustup could not add it): building dma24-tool with static glibc (about 1.1 MiB)"
        run_logged "dma24-tool build (glibc static)" "$CACHE/guest-tool/build.log" \
            env "${profile[@]}" CARGO_PROFILE_RELEASE_PANIC=abort RUSTFLAGS="-C target-feature=+crt-static" \
            "${build[@]}" --locked --target x86_64-unknown-linux-gnu
        GUEST_TOOL_BUILT=$target/x86_64-unknown-linux-gnu/release/dma24-tool
        how="glibc static"
    fi
    GUEST_TOOL=$INITRAMFS_DIR/dma24-tool
    cp "$GUEST_TOOL_BUILT" "$GUEST_TOOL"
    if ldd "$GUEST_TOOL" 2>&1 | grep -q '=>'; then
        die "dma24-tool is not static: $(ldd "$GUEST_TOOL" | head -n 2 | tr '\n' ' ')"
    fi
    step "dma24-tool ($how): $(stat -c %s "$GUEST_TOOL") bytes"
}

build_initramfs() {
    INITRAMFS_DIR=$CACHE/initramfs/$INITRAMFS_KEY
    [ -f "$INITRAMFS_DIR/initramfs.cpio" ] && return 0
    rm -rf "$INITRAMFS_DIR"
    mkdir -p "$INITRAMFS_DIR" "$CACHE/guest-tool"
    build_busybox
    build_guest_tool
    step "building the initramfs"
    local list=$INITRAMFS_DIR/files.txt
    # The init script without its comment lines (3 KB of the cpio).
    sed '1!{/^[[:space:]]*#/d}' "$IMAGES/initramfs/init" >"$INITRAMFS_DIR/init"
    # Debug info and local symbols are of no use in the guest and cost
    # unpack and insmod time there (the relocations' symbols stay).
    if [ -n "${MODULE_DIR:-}" ] && [ -f "$MODULE_DIR/dmalab.ko" ]; then
        strip --strip-unneeded -o "$INITRAMFS_DIR/dmalab.ko" "$MODULE_DIR/dmalab.ko"
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
        echo "dir /etc 0755 0 0"
        # /init is dma24-tool when there is one: it loads the driver with
        # system calls only, then runs the script (guest-driver/tool/src/init.rs).
        if [ -n "${GUEST_TOOL:-}" ] && [ -f "$GUEST_TOOL" ]; then
            echo "slink /init /bin/dma24-tool 0777 0 0"
            echo "file /etc/init.sh $INITRAMFS_DIR/init 0755 0 0"
        else
            echo "file /init $INITRAMFS_DIR/init 0755 0 0"
        fi
        echo "file /etc/fstab $IMAGES/initramfs/fstab 0644 0 0"
        echo "file /bin/busybox $BUSYBOX_BIN 0755 0 0"
        echo "slink /bin/sh busybox 0777 0 0"
        if [ -n "${MODULE_DIR:-}" ] && [ -f "$MODULE_DIR/dmalab.ko" ]; then
            echo "file /lib/modules/dmalab.ko $INITRAMFS_DIR/dmalab.ko 0644 0 0"
        fi
        if [ -n "${GUEST_TOOL:-}" ] && [ -f "$GUEST_TOOL" ]; then
            echo "file /bin/dma24-tool $GUEST_TOOL 0755 0 0"
        fi
    } >"$list"
    "$KERNEL_BUILD/usr/gen_init_cpio" "$list" >"$INITRAMFS_DIR/initramfs.cpio" ||
        die "gen_init_cpio failed on $list"
    local size
    size=$(stat -c %s "$INITRAMFS_DIR/initramfs.cpio")
    step "initramfs: $size bytes (budget $INITRAMFS_BUDGET_BYTES): busybox $(stat -c %s "$BUSYBOX_BIN"), dma24-tool $(stat -c %s "${GUEST_TOOL:-/dev/null}"), dmalab.ko $(stat -c %s "$INITRAMFS_DIR/dmalab.ko" 2>/dev/null || echo 0)"
    # A warning here (the images still build); ci/tests/initramfs_budget.rs fails on it.
    if [ "$size" -gt "$INITRAMFS_BUDGET_BYTES" ]; then
        step "WARNING: the initramfs is $size bytes, over its budget of $INITRAMFS_BUDGET_BYTES (images/initramfs/initramfs.env): every byte costs boot time on PVM hosts; shrink busybox (initramfs/busybox.config), the tool or the module, or raise the budget with a reason"
    fi
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
        echo "busybox=$BUSYBOX_SRC_VERSION (source, musl, initramfs/busybox.config)"
        echo "rustc=$(rustc -V)"
        echo "bindgen=$(bindgen --version)"
        echo "rust_lib_src=$RUST_LIB_SRC"
        echo "libclang_path=$LIBCLANG_PATH"
    } >"$out/manifest.txt"
    touch "$out/.done"
}
