//! Where dmalab keeps things on the host, defined once for the `dmalab`
//! binary, the task runner (`cargo xtask`) and the tests, and the same rule
//! as `images/build.sh`'s `${DMALAB_CACHE:-$HOME/.cache/dmalab}`.
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::path::PathBuf;

/// `$DMALAB_CACHE` if set and not empty, else `$HOME/.cache/dmalab` (with
/// `HOME` unset or empty: `/.cache/dmalab`, as the shell would expand it).
pub fn cache_dir() -> PathBuf {
    cache_dir_from(std::env::var_os("DMALAB_CACHE"), std::env::var_os("HOME"))
}

/// The images the cache's `current` link points at:
/// `<cache>/images/current` (vmlinux, initramfs.cpio).
pub fn images_dir() -> PathBuf {
    cache_dir().join("images").join("current")
}

fn cache_dir_from(cache: Option<OsString>, home: Option<OsString>) -> PathBuf {
    match cache.filter(|v| !v.is_empty()) {
        Some(c) => PathBuf::from(c),
        None => {
            let home = home.filter(|v| !v.is_empty()).unwrap_or_else(|| "/".into());
            PathBuf::from(home).join(".cache").join("dmalab")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shell_rule() {
        let s = |v: &str| Some(OsString::from(v));
        assert_eq!(cache_dir_from(s("/c"), s("/h")), PathBuf::from("/c"));
        assert_eq!(
            cache_dir_from(s(""), s("/h")),
            PathBuf::from("/h/.cache/dmalab"),
            "empty DMALAB_CACHE counts as unset"
        );
        assert_eq!(
            cache_dir_from(None, s("/h")),
            PathBuf::from("/h/.cache/dmalab")
        );
        assert_eq!(cache_dir_from(None, None), PathBuf::from("/.cache/dmalab"));
        assert_eq!(cache_dir_from(None, s("")), PathBuf::from("/.cache/dmalab"));
    }
}
