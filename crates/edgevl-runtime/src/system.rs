//! Facts about the machine and the process: physical cores, peak memory.

use std::collections::HashSet;

/// The most compute threads a session, encoder or converter takes: far above any phone's or
/// laptop's cores, and far below the thousands of threads a mistyped count would start.
pub const MAX_THREADS: usize = 1024;

/// Checks a compute thread count: 1..=[`MAX_THREADS`].
pub fn check_threads(n: usize) -> Result<usize, String> {
    if (1..=MAX_THREADS).contains(&n) {
        Ok(n)
    } else {
        Err(format!("the thread count must be from 1 to {MAX_THREADS}, not {n}"))
    }
}

/// Physical cores (distinct package/core pairs in sysfs), falling back to logical CPUs.
pub fn physical_cores() -> usize {
    let logical = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut cores = HashSet::new();
    for cpu in 0..logical.max(1) * 2 {
        let base = format!("/sys/devices/system/cpu/cpu{cpu}/topology");
        let read = |f: &str| std::fs::read_to_string(format!("{base}/{f}")).ok();
        if let (Some(pkg), Some(core)) = (read("physical_package_id"), read("core_id")) {
            cores.insert((pkg.trim().to_string(), core.trim().to_string()));
        }
    }
    if cores.is_empty() {
        logical
    } else {
        cores.len().min(logical)
    }
}

/// Peak resident set size of this process in MB (`VmHWM`), mapped file pages included.
pub fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}
