//! What a process costs, read from `/proc/<pid>`: CPU time and resident memory.

use std::time::Duration;

use anyhow::Context;

/// One reading of a process.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// User plus system CPU time so far.
    pub cpu: Duration,
    /// Resident set size now.
    pub rss_bytes: u64,
    /// Peak resident set size so far.
    pub peak_rss_bytes: u64,
}

/// Reads `pid`'s usage.
pub fn usage(pid: u32) -> anyhow::Result<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name may hold spaces; the fields after it are space-separated, starting with
    // the state (field 3); utime and stime are fields 14 and 15, in clock ticks.
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .context("malformed /proc/<pid>/stat")?
        .1
        .split(' ')
        .collect();
    let ticks = |index: usize| -> anyhow::Result<u64> {
        fields
            .get(index)
            .context("short /proc/<pid>/stat")?
            .parse()
            .context("malformed /proc/<pid>/stat")
    };
    let cpu_ticks = ticks(11)? + ticks(12)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kilobytes = |key: &str| -> anyhow::Result<u64> {
        let line = status
            .lines()
            .find(|line| line.starts_with(key))
            .with_context(|| format!("no {key} in /proc/{pid}/status"))?;
        let value = line[key.len()..].trim().trim_end_matches("kB").trim();
        Ok(value
            .parse::<u64>()
            .context("malformed /proc/<pid>/status")?
            * 1024)
    };
    Ok(Usage {
        cpu: Duration::from_secs_f64(cpu_ticks as f64 / clock_ticks_per_second() as f64),
        rss_bytes: kilobytes("VmRSS:")?,
        peak_rss_bytes: kilobytes("VmHWM:")?,
    })
}

/// CPU use between two readings `elapsed` apart, in percent of one core.
pub fn cpu_percent(before: &Usage, after: &Usage, elapsed: Duration) -> f64 {
    after.cpu.saturating_sub(before.cpu).as_secs_f64() / elapsed.as_secs_f64() * 100.0
}

/// Mebibytes, for reporting.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`; 100 on every common Linux).
fn clock_ticks_per_second() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|output| String::from_utf8(output.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .filter(|ticks| *ticks > 0)
            .unwrap_or(100)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let usage = usage(std::process::id()).expect("usage");
        assert!(usage.rss_bytes > 0);
        assert!(usage.peak_rss_bytes >= usage.rss_bytes);
        // Burn some CPU and see it counted.
        let before = usage.cpu;
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(200) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = super::usage(std::process::id()).expect("usage").cpu;
        assert!(after > before, "{after:?} after {before:?}");
    }
}
