# The build's tools: host packages, bindgen, and Debian packages fetched with a
# private apt configuration (the machine's own sources list is never changed).

APT_DIR=$CACHE/apt
DEB_DIR=$CACHE/debs

# Host packages the build needs, from the machine's own Debian suite. Not part
# of any cache key: they are tools, the pinned inputs are in versions.env.
HOST_PACKAGES="make gcc binutils patch flex bison bc libelf-dev libssl-dev libclang-19-dev
cpio xz-utils python3 util-linux musl-tools linux-libc-dev dpkg-dev"

ensure_host_packages() {
    local missing=() p
    for p in $HOST_PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    step "installing host packages: ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        die "missing host packages: ${missing[*]}; install them with: sudo apt-get install ${missing[*]}"
    fi
    apt-get update -qq >/dev/null 2>&1 ||
        die "apt-get update failed: no network to Debian's package archive?"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null ||
        die "apt-get install ${missing[*]} failed"
}

ensure_bindgen() {
    export PATH="$CACHE/tools/bin:$HOME/.cargo/bin:$PATH"
    if bindgen --version 2>/dev/null | grep -q " $BINDGEN_VERSION\$"; then
        return 0
    fi
    step "installing bindgen-cli $BINDGEN_VERSION from crates.io (about 3 min)"
    run_logged "cargo install bindgen-cli" "$CACHE/bindgen-install.log" \
        cargo install --locked bindgen-cli --version "$BINDGEN_VERSION" --root "$CACHE/tools"
}

# apt-get/apt-cache against the private sources list under the cache.
apt_private() {
    local tool=apt-get
    case "$1" in policy | show | showsrc | madison) tool=apt-cache ;; esac
    "$tool" -o Dir::Etc::SourceList="$APT_DIR/sources.list" -o Dir::Etc::SourceParts=/dev/null \
        -o Dir::State::Lists="$APT_DIR/lists" -o Dir::Cache="$APT_DIR/cache" \
        -o APT::Sandbox::User=root -o Debug::NoLocking=1 "$@"
}

apt_private_update() {
    mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial"
    local s
    apt_private_sources >"$APT_DIR/sources.list"
    step "reading Debian package lists ($DEBIAN_SUITES; sources of $BUSYBOX_SRC_SUITE)"
    apt_private update -qq >"$APT_DIR/update.log" 2>&1 ||
        die "cannot read Debian's package lists ($(tail -n1 "$APT_DIR/update.log")): no network to the archive?"
    apt_private_sources >"$APT_DIR/.updated"
}

# The private sources list: binary packages of every suite, source packages
# of the one busybox is built from.
apt_private_sources() {
    local s
    for s in $DEBIAN_SUITES; do
        echo "deb $DEBIAN_MIRROR $s main"
    done
    echo "deb-src $DEBIAN_MIRROR $BUSYBOX_SRC_SUITE main"
}

# Reads the package lists unless they were read for exactly these sources.
apt_private_ready() {
    [ -f "$APT_DIR/.updated" ] && [ "$(cat "$APT_DIR/.updated")" = "$(apt_private_sources)" ] ||
        apt_private_update
}

# Downloads one pinned package into DEB_DIR unless it is there; on a version
# that left the archive, says which versions are there and where the pin is.
fetch_deb() {
    local pkg=$1 version=$2 file
    # apt writes an epoch "1:" as "1%3a" in file names.
    file=$(ls "$DEB_DIR/${pkg}_"*"${version#*:}"_*.deb 2>/dev/null | head -n1 || true)
    if [ -n "$file" ]; then
        echo "$file"
        return 0
    fi
    apt_private_ready
    step "downloading $pkg $version"
    mkdir -p "$DEB_DIR"
    if ! (cd "$DEB_DIR" && apt_private download -qq "$pkg=$version" >/dev/null 2>"$APT_DIR/download.log"); then
        local have
        have=$(apt_private policy "$pkg" 2>/dev/null | awk '/^ +(\*\*\* )?[0-9]/ {print $1 == "***" ? $2 : $1}' | tr '\n' ' ')
        die "$pkg $version is not in the archive (suites: $DEBIAN_SUITES). Versions there now: ${have:-none}. Move the pin in images/versions.env."
    fi
    ls "$DEB_DIR/${pkg}_"*"${version#*:}"_*.deb | head -n1
}

# Downloads one pinned source package (.dsc and its tarballs) into
# $DEB_DIR/src unless there; prints the .dsc's path.
fetch_source() {
    local pkg=$1 version=$2 dsc
    dsc=$DEB_DIR/src/${pkg}_${version#*:}.dsc
    if [ -f "$dsc" ]; then
        echo "$dsc"
        return 0
    fi
    apt_private_ready
    step "downloading the source of $pkg $version"
    mkdir -p "$DEB_DIR/src"
    if ! (cd "$DEB_DIR/src" && apt_private source --download-only -qq "$pkg=$version" >/dev/null 2>"$APT_DIR/download.log"); then
        die "the source package $pkg $version is not in $BUSYBOX_SRC_SUITE ($(tail -n1 "$APT_DIR/download.log")). Move the pin in images/versions.env (apt-cache showsrc $pkg lists the versions)."
    fi
    [ -f "$dsc" ] || die "apt-get source $pkg=$version wrote no $dsc"
    echo "$dsc"
}

fetch_debs() {
    local rustc_version
    rustc_version=$(rustc -V | awk '{print $2}')
    case "$RUST_SRC_PKG_VERSION" in
    "$rustc_version"+*) ;;
    *) die "rustc is $rustc_version but images/versions.env pins rust-src $RUST_SRC_PKG_VERSION: they must match exactly; pin the rust-src of $rustc_version (images/build.sh versions lists them)" ;;
    esac
    KERNEL_DEB=$(fetch_deb "$KERNEL_PKG" "$KERNEL_PKG_VERSION")
    RUST_SRC_DEB=$(fetch_deb rust-src "$RUST_SRC_PKG_VERSION")
    BUSYBOX_DSC=$(fetch_source busybox "$BUSYBOX_SRC_VERSION")
    RUST_LIB_SRC=$CACHE/rust-src/$RUST_SRC_PKG_VERSION/usr/lib/rustlib/src/rust/library
    if [ ! -d "$RUST_LIB_SRC/core" ]; then
        step "extracting rust-src"
        mkdir -p "$CACHE/rust-src/$RUST_SRC_PKG_VERSION"
        dpkg -x "$RUST_SRC_DEB" "$CACHE/rust-src/$RUST_SRC_PKG_VERSION"
    fi
    export RUST_LIB_SRC
    export LIBCLANG_PATH=${LIBCLANG_PATH:-$LIBCLANG_PATH_DEFAULT}
}
