//! The allocator's one setting. The binary runs on mimalloc (see `main.rs`), which returns
//! freed pages to the OS only after its purge delay: mimalloc 3's default of 1 s held a
//! 100k-object snapshot at 324 MiB, 10 ms at 189 MiB (mimalloc 2, whose default 10 ms is,
//! held a restore at 680 MiB: docs/benchmarks.md). The delay is set in-process, so the
//! binary run by hand keeps the memory the image keeps; `MIMALLOC_PURGE_DELAY`, when set,
//! still wins.

use libmimalloc_sys::mi_option_t;

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_e` (mimalloc.h), which
/// libmimalloc-sys does not name; the test below checks the linked mimalloc agrees.
const PURGE_DELAY: mi_option_t = 15;

/// Milliseconds before freed pages go back to the OS.
const PURGE_DELAY_MS: std::ffi::c_long = 10;

/// Give freed pages back after [`PURGE_DELAY_MS`] unless `MIMALLOC_PURGE_DELAY` says
/// otherwise. Harmless where mimalloc is linked but not the global allocator.
#[allow(unsafe_code)]
pub fn return_freed_pages_soon() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: `mi_option_set` stores an option's value; mimalloc allows it at any time from
    // any thread, and it takes no pointers.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, PURGE_DELAY_MS) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(unsafe_code)]
    fn purge_delay() -> std::ffi::c_long {
        // SAFETY: reads an option's value; no pointers.
        unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) }
    }

    #[test]
    fn the_option_set_is_mimallocs_purge_delay_and_it_becomes_ten_milliseconds() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        assert_eq!(
            purge_delay(),
            1000,
            "option {PURGE_DELAY} is not mimalloc 3's purge delay (default 1000 ms)"
        );
        return_freed_pages_soon();
        assert_eq!(purge_delay(), PURGE_DELAY_MS);
    }
}
