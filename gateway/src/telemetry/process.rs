//! The process's own metrics under the names every Prometheus client library
//! exports and every dashboard reads (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_open_fds`, …), read from
//! `/proc/self` at each scrape. Elsewhere than Linux there are none.

use std::sync::Mutex;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Gauge, Opts};

/// The unit of `/proc`'s times (clock ticks as user space sees them): the
/// kernel's USER_HZ, 100 on every architecture Linux runs the gateway on.
const USER_HZ: f64 = 100.0;

/// What `/proc/self` says now.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Reading {
    /// User and system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Resident set size, in bytes.
    pub resident_bytes: f64,
    /// Virtual memory size, in bytes.
    pub virtual_bytes: f64,
    /// Threads.
    pub threads: f64,
    /// Start time, in seconds since the Unix epoch.
    pub start_time_seconds: f64,
    /// Open file descriptors.
    pub open_fds: f64,
    /// The soft limit on open file descriptors.
    pub max_fds: f64,
}

/// Reads `/proc/self`; `None` where there is none.
pub fn read() -> Option<Reading> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name, which may hold spaces: field 3 on.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = |key: &str| {
        status.lines().find_map(|l| l.strip_prefix(key)?.trim().strip_suffix("kB")?.trim().parse::<f64>().ok())
    };
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())?;
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| l.lines().find(|l| l.starts_with("Max open files"))?.split_whitespace().nth(3)?.parse().ok())
        .unwrap_or(0.0);
    Some(Reading {
        cpu_seconds: (field(14)? + field(15)?) / USER_HZ,
        threads: field(20)?,
        start_time_seconds: boot + field(22)? / USER_HZ,
        virtual_bytes: kib("VmSize:")? * 1024.0,
        resident_bytes: kib("VmRSS:")? * 1024.0,
        open_fds: std::fs::read_dir("/proc/self/fd").map(|d| d.count() as f64).unwrap_or(0.0),
        max_fds,
    })
}

/// The collector the ops port's registry holds.
pub struct ProcessCollector {
    cpu: Counter,
    gauges: [Gauge; 6],
    descs: Vec<Desc>,
    /// CPU seconds already counted (the counter only goes up by deltas).
    counted: Mutex<f64>,
}

impl std::fmt::Debug for ProcessCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessCollector").finish_non_exhaustive()
    }
}

impl Default for ProcessCollector {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessCollector {
    /// The collector, reading at each scrape.
    pub fn new() -> Self {
        let gauge = |name: &str, help: &str| Gauge::with_opts(Opts::new(name, help)).unwrap_or_else(|_| unreachable!());
        let cpu = Counter::with_opts(Opts::new(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
        ))
        .unwrap_or_else(|_| unreachable!());
        let gauges = [
            gauge("process_resident_memory_bytes", "Resident memory size in bytes."),
            gauge("process_virtual_memory_bytes", "Virtual memory size in bytes."),
            gauge("process_threads", "Number of OS threads in the process."),
            gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds."),
            gauge("process_open_fds", "Number of open file descriptors."),
            gauge("process_max_fds", "Maximum number of open file descriptors."),
        ];
        let descs = std::iter::once(&cpu as &dyn Collector)
            .chain(gauges.iter().map(|g| g as &dyn Collector))
            .flat_map(|c| c.desc().into_iter().cloned())
            .collect();
        Self { cpu, gauges, descs, counted: Mutex::new(0.0) }
    }
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Some(r) = read() else { return Vec::new() };
        if let Ok(mut counted) = self.counted.lock()
            && r.cpu_seconds > *counted
        {
            self.cpu.inc_by(r.cpu_seconds - *counted);
            *counted = r.cpu_seconds;
        }
        let values = [r.resident_bytes, r.virtual_bytes, r.threads, r.start_time_seconds, r.open_fds, r.max_fds];
        for (gauge, value) in self.gauges.iter().zip(values) {
            gauge.set(value);
        }
        std::iter::once(&self.cpu as &dyn Collector)
            .chain(self.gauges.iter().map(|g| g as &dyn Collector))
            .flat_map(|c| c.collect())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_reads_itself() {
        let before = read().unwrap();
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        let after = read().unwrap();
        drop(file);
        assert!(after.open_fds > before.open_fds - 1.0 && after.open_fds >= 3.0);
        assert!(before.resident_bytes > 1e6 && before.virtual_bytes >= before.resident_bytes);
        assert!(before.threads >= 1.0 && before.max_fds >= after.open_fds);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(before.start_time_seconds <= now + 1.0 && before.start_time_seconds > now - 86_400.0 * 30.0);
        // CPU time only grows.
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(30) {
            std::hint::black_box(spin.elapsed());
        }
        assert!(read().unwrap().cpu_seconds > before.cpu_seconds);
    }
}
