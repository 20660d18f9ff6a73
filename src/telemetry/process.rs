//! The standard `process_*` metrics, read from `/proc/self` on Linux.

pub fn describe() {
    use metrics::{Unit, describe_gauge};
    describe_gauge!(
        "process_cpu_seconds_total",
        Unit::Seconds,
        "User and system CPU time spent"
    );
    describe_gauge!(
        "process_resident_memory_bytes",
        Unit::Bytes,
        "Resident memory size"
    );
    describe_gauge!(
        "process_virtual_memory_bytes",
        Unit::Bytes,
        "Virtual memory size"
    );
    describe_gauge!("process_open_fds", "Open file descriptors");
    describe_gauge!("process_threads", "OS threads");
}

#[cfg(target_os = "linux")]
pub fn record() {
    // Fields after the command name (which may hold spaces), from 3 on.
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    // USER_HZ and the page size are 100 and 4 KiB on Linux's common
    // targets (x86_64, aarch64 with 4K pages).
    const TICKS_PER_S: f64 = 100.0;
    const PAGE: f64 = 4096.0;
    if let (Some(utime), Some(stime)) = (field(14), field(15)) {
        metrics::gauge!("process_cpu_seconds_total").set((utime + stime) / TICKS_PER_S);
    }
    if let Some(threads) = field(20) {
        metrics::gauge!("process_threads").set(threads);
    }
    if let Some(vsize) = field(23) {
        metrics::gauge!("process_virtual_memory_bytes").set(vsize);
    }
    if let Some(rss_pages) = field(24) {
        metrics::gauge!("process_resident_memory_bytes").set(rss_pages * PAGE);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        metrics::gauge!("process_open_fds").set(fds.count() as f64);
    }
}

#[cfg(not(target_os = "linux"))]
pub fn record() {}
