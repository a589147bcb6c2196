//! Facts about the process's environment the limits are sized from, and what the process asks of
//! its allocator.

/// The soft open-file limit (`RLIMIT_NOFILE`), when it can be read.
pub fn open_file_limit() -> Option<usize> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own and pass by pointer.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) };
    if rc != 0 || rl.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    usize::try_from(rl.rlim_cur).ok()
}

/// Seconds since the Unix epoch, as a float (for timestamp gauges).
pub fn unix_now_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Hands the allocator's free memory back to the kernel (glibc's `malloc_trim`). Called a moment
/// after a reload, when the previous snapshot (registry, TLS configs, parsed certificates) has
/// been freed, so the resident size does not ratchet up with every rotation. A no-op elsewhere.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and trims glibc's own heaps; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Caps glibc's malloc arenas at `n` (one per runtime worker) unless `MALLOC_ARENA_MAX` is set.
/// glibc otherwise adds arenas as threads contend (up to eight per core), and memory freed in
/// one arena cannot serve another: the resident size of a long-running process creeps up. Call it
/// before any thread starts. A no-op elsewhere.
pub fn limit_allocator_arenas(n: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let n = libc::c_int::try_from(n.max(1)).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt sets a glibc tunable; called before other threads exist.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, n);
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = n;
}
