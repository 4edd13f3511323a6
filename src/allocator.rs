//! The allocator's settings. The binary runs on mimalloc (see `main.rs`); two of its
//! defaults cost a restore or a snapshot most of its memory, so [`configure`] changes them
//! in-process (the binary run by hand keeps the memory the image keeps; the matching
//! `MIMALLOC_*` variable, when set, still wins):
//!
//! - **Purge delay**: mimalloc returns freed pages to the OS only after it. mimalloc 3's
//!   default of 1 s held a 100k-object snapshot at 324 MiB, 10 ms at 189 MiB (mimalloc 2,
//!   whose default 10 ms is, held a restore at 680 MiB: docs/benchmarks.md). 0 (at once)
//!   holds a 300k-object restore ~12 MiB lower than 10 ms and a first snapshot ~20 MiB
//!   lower, in the same time: what a long run frees is no longer held while it runs on.
//! - **Transparent huge pages**: mimalloc asks the kernel for 2 MiB pages on its arenas, so
//!   on a host whose THP setting is `madvise` (the common default, Kubernetes nodes
//!   included) or `always`, one small object kept alive holds 2 MiB resident and a purge
//!   frees only whole 2 MiB runs. Measured with 4 KiB pages: a 100k-object snapshot 186 →
//!   ~120 MiB, a 300k-object restore 180 → 140 MiB, the same wall time.
//!
//! C code allocates from the C library's malloc instead; on glibc, [`configure`] keeps its
//! large buffers mapped on their own so that a free gives them back (see
//! `map_large_c_buffers`).

use libmimalloc_sys::mi_option_t;

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_e` (mimalloc.h), which
/// libmimalloc-sys does not name; the test below checks the linked mimalloc agrees.
const PURGE_DELAY: mi_option_t = 15;

/// Milliseconds before freed pages go back to the OS: none.
const PURGE_DELAY_MS: std::ffi::c_long = 0;

/// `mi_option_allow_thp` in mimalloc 3's `mi_option_e`; checked by the test below too.
const ALLOW_THP: mi_option_t = 43;

/// Set the allocator up for a process that peaks once and must stay within its pod's limit:
/// freed pages back at once ([`PURGE_DELAY_MS`]), 4 KiB pages instead of transparent huge pages.
/// Call first thing in `main`. Harmless where mimalloc is linked but not the global
/// allocator.
pub fn configure() {
    return_freed_pages_soon();
    keep_pages_small();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    map_large_c_buffers();
}

/// Every C allocation past [`C_MMAP_THRESHOLD`] mapped on its own and unmapped when freed,
/// unless `MALLOC_MMAP_THRESHOLD_` says otherwise. C code (zstd's decompression window, 2 MiB
/// for each pack a verifying pass checks) allocates from the C library, not mimalloc. glibc
/// raises its threshold to the largest mapped buffer freed, so from the second pack on it
/// serves the window from the checking thread's arena and keeps it there after the free:
/// each blocking thread that ever checked a pack held one (+8 MiB on a 100k-object restore).
/// Setting the threshold turns that adjustment off. musl (the image's libc) maps buffers
/// that size already.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn map_large_c_buffers() {
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some() {
        return;
    }
    // SAFETY: `mallopt` sets one of glibc's malloc parameters; it takes integers only and is
    // safe to call at any time (it takes the arena locks itself).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, C_MMAP_THRESHOLD);
    }
}

/// glibc's own starting mmap threshold (128 KiB), kept fixed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const C_MMAP_THRESHOLD: std::ffi::c_int = 128 * 1024;

/// Give freed pages back at once ([`PURGE_DELAY_MS`]) unless `MIMALLOC_PURGE_DELAY` says
/// otherwise.
#[allow(unsafe_code)]
fn return_freed_pages_soon() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: `mi_option_set` stores an option's value; mimalloc allows it at any time from
    // any thread, and it takes no pointers.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, PURGE_DELAY_MS) }
}

/// No transparent huge pages for this process unless `MIMALLOC_ALLOW_THP` says otherwise.
/// mimalloc reads the option when it starts, before `main`, and has by then reserved its
/// first arena asking for huge pages; the option keeps it from asking again, and
/// `PR_SET_THP_DISABLE` (what mimalloc itself does when the variable is 0) makes the kernel
/// fault every page of the process in at 4 KiB from now on, that first arena included.
#[allow(unsafe_code)]
fn keep_pages_small() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return;
    }
    // SAFETY: as above.
    unsafe { libmimalloc_sys::mi_option_set(ALLOW_THP, 0) }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    // SAFETY: PR_SET_THP_DISABLE takes integers only and changes this process's flag; a
    // kernel without it answers EINVAL, which leaves the process as it was.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// A global allocator that counts the bytes live on the heap and the highest count since it
/// was last read, around the allocator that does the work: RSS says what the process holds,
/// this says how much of it the code holds and how much is the allocator's. Always compiled,
/// so its test runs in every build; only the measuring build (the `heap-stats` feature, two
/// atomic operations per allocation) installs it as the global allocator.
pub mod heap_stats {
    use std::alloc::{GlobalAlloc, Layout};
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    static LIVE: AtomicUsize = AtomicUsize::new(0);
    static PEAK: AtomicUsize = AtomicUsize::new(0);
    static BIGGEST: AtomicUsize = AtomicUsize::new(0);

    pub struct Counting<A>(pub A);

    // SAFETY: every call is passed to the wrapped allocator unchanged; only counters change.
    #[allow(unsafe_code)]
    unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let p = unsafe { self.0.alloc(layout) };
            if !p.is_null() {
                grew(layout.size());
            }
            p
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            let p = unsafe { self.0.alloc_zeroed(layout) };
            if !p.is_null() {
                grew(layout.size());
            }
            p
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { self.0.dealloc(ptr, layout) };
            LIVE.fetch_sub(layout.size(), Relaxed);
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let p = unsafe { self.0.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                LIVE.fetch_sub(layout.size(), Relaxed);
                grew(new_size);
            }
            p
        }
    }

    fn grew(by: usize) {
        let now = LIVE.fetch_add(by, Relaxed) + by;
        PEAK.fetch_max(now, Relaxed);
        BIGGEST.fetch_max(by, Relaxed);
    }

    /// What one window of the trace saw.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Window {
        /// Bytes live now.
        pub live: usize,
        /// The most bytes live at once since the last read.
        pub peak: usize,
        /// The largest single allocation since the last read: a peak made of one buffer
        /// (a pack, a page body) shows here.
        pub biggest: usize,
    }

    /// Read the counters; the read starts a new window.
    pub fn read() -> Window {
        let live = LIVE.load(Relaxed);
        Window {
            live,
            peak: PEAK.swap(live, Relaxed).max(live),
            biggest: BIGGEST.swap(0, Relaxed),
        }
    }

    /// Append `seconds live_MiB window_peak_MiB biggest_allocation_MiB` to `path` every 50 ms
    /// for the process's life.
    pub fn trace_to(path: std::path::PathBuf) {
        std::thread::spawn(move || {
            use std::io::Write;
            let Ok(mut out) = std::fs::File::create(&path) else {
                eprintln!("heap-stats: cannot write {}", path.display());
                return;
            };
            let start = std::time::Instant::now();
            loop {
                std::thread::sleep(std::time::Duration::from_millis(50));
                let w = read();
                let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
                let _ = writeln!(
                    out,
                    "{:.2} {:.1} {:.1} {:.1}",
                    start.elapsed().as_secs_f64(),
                    mib(w.live),
                    mib(w.peak),
                    mib(w.biggest)
                );
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(unsafe_code)]
    fn option(o: mi_option_t) -> std::ffi::c_long {
        // SAFETY: reads an option's value; no pointers.
        unsafe { libmimalloc_sys::mi_option_get(o) }
    }

    #[test]
    fn the_options_set_are_mimallocs_purge_delay_and_huge_pages_and_they_take_their_values() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some()
            || std::env::var_os("MIMALLOC_ALLOW_THP").is_some()
        {
            return;
        }
        assert_eq!(
            option(PURGE_DELAY),
            1000,
            "option {PURGE_DELAY} is not mimalloc 3's purge delay (default 1000 ms)"
        );
        assert_eq!(
            option(ALLOW_THP),
            1,
            "option {ALLOW_THP} is not mimalloc 3's allow_thp (default 1)"
        );
        configure();
        assert_eq!(option(PURGE_DELAY), PURGE_DELAY_MS);
        assert_eq!(option(ALLOW_THP), 0);
        #[cfg(target_os = "linux")]
        {
            #[allow(unsafe_code)]
            // SAFETY: reads this process's flag; no pointers.
            let disabled = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
            assert_eq!(
                disabled, 1,
                "the kernel still gives this process huge pages"
            );
        }
    }

    #[test]
    #[allow(unsafe_code)]
    fn the_counting_allocator_counts_what_is_live_and_the_most_since_it_was_last_read() {
        use std::alloc::{GlobalAlloc, Layout, System};
        let counting = heap_stats::Counting(System);
        let before = heap_stats::read().live;
        let layout = Layout::from_size_align(1 << 20, 8).unwrap();
        // SAFETY: a non-zero layout; the block is freed with the same layout below.
        let block = unsafe { counting.alloc(layout) };
        assert!(!block.is_null());
        let w = heap_stats::read();
        assert_eq!(w.live - before, 1 << 20);
        assert_eq!(w.peak, w.live);
        assert_eq!(w.biggest, 1 << 20);
        // SAFETY: allocated above with this layout.
        let block = unsafe { counting.realloc(block, layout, 3 << 20) };
        let layout = Layout::from_size_align(3 << 20, 8).unwrap();
        // SAFETY: as above, with the layout it now has.
        unsafe { counting.dealloc(block, layout) };
        let w = heap_stats::read();
        assert_eq!(w.live, before, "freed, nothing is live");
        assert_eq!(w.peak - before, 3 << 20, "the window saw the 3 MiB block");
        assert_eq!(w.biggest, 3 << 20);
        let next = heap_stats::read();
        assert_eq!(
            (next.peak, next.biggest),
            (before, 0),
            "reading starts a new window"
        );
    }
}
