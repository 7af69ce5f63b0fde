//! Latency percentiles (hdrhistogram), process accounting read from `/proc`, and error counts.

use std::collections::BTreeMap;
use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency the histograms track, in microseconds (10 minutes); larger values are clamped.
pub const MAX_LATENCY_US: u64 = 600_000_000;

/// Counts one occurrence of the error `what`, cut to 160 bytes so that errors carrying details
/// (addresses, payloads) still group.
pub fn count_error(errors: &Mutex<BTreeMap<String, u64>>, what: impl Into<String>) {
    let mut what: String = what.into();
    if what.len() > 160 {
        let mut cut = 160;
        while !what.is_char_boundary(cut) {
            cut -= 1;
        }
        what.truncate(cut);
    }
    *errors.lock().unwrap().entry(what).or_default() += 1;
}

/// A latency histogram in microseconds with 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// Percentiles of one histogram, in microseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            mean_us: (h.mean() * 10.0).round() / 10.0,
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// Records one latency, clamping to the tracked range.
pub fn record(h: &mut Histogram<u64>, latency_us: u64) {
    let _ = h.record(latency_us.clamp(1, MAX_LATENCY_US));
}

/// CPU time (user + system) and resident memory of a set of processes.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct ProcSample {
    pub cpu_s: f64,
    pub rss_kib: u64,
    /// Processes that could not be read (gone, or no permission).
    pub missing: u32,
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// utime + stime of `/proc/<pid>/stat` (or `/proc/self/stat` with `None`), in seconds.
fn cpu_seconds(stat: &str) -> Option<f64> {
    // The command name (field 2) may hold spaces and parentheses: fields restart after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After ')': state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15)
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

fn rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Sums CPU seconds and RSS over `pids`.
pub fn sample(pids: &[u32]) -> ProcSample {
    let mut s = ProcSample::default();
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"));
        match (
            stat.ok().and_then(|t| cpu_seconds(&t)),
            status.ok().and_then(|t| rss_kib(&t)),
        ) {
            (Some(cpu), Some(rss)) => {
                s.cpu_s += cpu;
                s.rss_kib += rss;
            }
            _ => s.missing += 1,
        }
    }
    s
}

/// Time the hypervisor ran something else while this VM's CPUs wanted to run (`steal` of
/// `/proc/stat`), summed over the CPUs, in ms. `None` where the kernel does not report it.
fn steal_ms(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    // cpu user nice system idle iowait irq softirq steal
    let steal: u64 = line.split_whitespace().nth(8)?.parse().ok()?;
    Some((steal as f64 * 1000.0 / clock_ticks()) as u64)
}

/// Samples the machine's steal time every 10 ms on its own thread, until dropped: when a
/// latency tail coincides with steal, the hypervisor's other guests set it, not the server.
pub struct StealTimeline {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<(u64, u64)>>>,
}

impl StealTimeline {
    pub fn start() -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let read = || {
                std::fs::read_to_string("/proc/stat")
                    .ok()
                    .and_then(|t| steal_ms(&t))
            };
            let mut samples = Vec::new();
            let Some(mut last) = read() else {
                return samples;
            };
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(10));
                let Some(now) = read() else { break };
                if now > last {
                    samples.push((crate::payload::now_ns(), now - last));
                }
                last = now;
            }
            samples
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// (unix ns when seen, ms stolen since the previous sample), for every sample with steal.
    pub fn finish(mut self) -> Vec<(u64, u64)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for StealTimeline {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// CPU seconds of this process (all threads).
pub fn self_cpu() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|t| cpu_seconds(&t))
        .unwrap_or(0.0)
}

/// CPU time of the calling thread (user, system) in microseconds, from getrusage(RUSAGE_THREAD).
pub fn thread_cpu_us() -> (u64, u64) {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    let us = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000 + tv.tv_usec as u64;
    (us(usage.ru_utime), us(usage.ru_stime))
}

/// Median of the values (mean of the two middle ones for an even count); `None` when empty.
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = new_histogram();
        for v in 1..=1000 {
            record(&mut h, v);
        }
        record(&mut h, 0); // clamped to 1
        let l = Latency::of(&h);
        assert_eq!(l.count, 1001);
        assert_eq!(l.p50_us, 500);
        assert_eq!(l.p90_us, 900);
        assert_eq!(l.p99_us, 990);
        assert_eq!(l.max_us, 1000);
        assert_eq!(Latency::of(&new_histogram()), Latency::default());
        record(&mut h, u64::MAX);
        assert!(Latency::of(&h).max_us >= MAX_LATENCY_US);
    }

    #[test]
    fn proc_parsing() {
        let stat = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0";
        assert_eq!(cpu_seconds(stat), Some(300.0 / clock_ticks()));
        assert_eq!(rss_kib("Name:\tx\nVmRSS:\t   12345 kB\n"), Some(12345));
        let me = sample(&[std::process::id()]);
        assert_eq!(me.missing, 0);
        assert!(me.rss_kib > 0);
        assert_eq!(sample(&[u32::MAX]).missing, 1);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn steal_is_the_eighth_number_of_the_cpu_line() {
        let stat = "cpu  5217427 879305 666597 3294223 24485 0 85363 35616 0 0\n\
                    cpu0 2636778 442184 333571 1614895 13470 0 42733 17740 0 0\n";
        assert_eq!(
            steal_ms(stat),
            Some((35616.0 * 1000.0 / clock_ticks()) as u64)
        );
    }
}
