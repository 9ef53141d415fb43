//! The host's real figures for heartbeats, from `sysinfo`.

use std::path::{Path, PathBuf};

use cygnet_proto::v1 as pb;
use sysinfo::{Disks, System};

/// Samples CPU, memory, load and the free space of the disk holding the work directory.
pub struct HostMetrics {
    system: System,
    disks: Disks,
    work_directory: PathBuf,
}

impl HostMetrics {
    /// Starts sampling. The first CPU figure needs a previous refresh, so one is taken now.
    pub fn new(work_directory: &Path) -> anyhow::Result<Self> {
        let mut system = System::new()
            .map_err(|error| anyhow::anyhow!("cannot read system information: {error}"))?;
        system.refresh_cpu_usage();
        system.refresh_memory();
        let disks = Disks::new_with_refreshed_list()
            .map_err(|error| anyhow::anyhow!("cannot list disks: {error}"))?;
        Ok(Self {
            system,
            disks,
            work_directory: work_directory
                .canonicalize()
                .unwrap_or_else(|_| work_directory.to_path_buf()),
        })
    }

    /// Current figures, with the jobs the agent runs.
    pub fn heartbeat(
        &mut self,
        running_jobs: u32,
        running_execution_ids: Vec<i64>,
    ) -> pb::Heartbeat {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        self.disks.refresh(true);
        let total = self.system.total_memory();
        let used = self.system.used_memory().min(total);
        let memory_percent = if total == 0 {
            0.0
        } else {
            used as f64 * 100.0 / total as f64
        };
        pb::Heartbeat {
            cpu_percent: f64::from(self.system.global_cpu_usage()).clamp(0.0, 100.0),
            memory_percent,
            memory_used_bytes: used,
            memory_total_bytes: total,
            disk_free_bytes: self.disk_free_bytes(),
            load_average: System::load_average().map_or(0.0, |load| load.one),
            running_jobs,
            running_execution_ids,
        }
    }

    /// Free space on the disk whose mount point is the longest prefix of the work directory.
    fn disk_free_bytes(&self) -> u64 {
        self.disks
            .iter()
            .filter(|disk| self.work_directory.starts_with(disk.mount_point()))
            .max_by_key(|disk| disk.mount_point().as_os_str().len())
            .map_or(0, |disk| disk.available_space())
    }
}

/// What the agent tells the server about its host at registration.
pub struct HostFacts {
    pub hostname: String,
    pub os: String,
    pub arch: String,
}

impl HostFacts {
    pub fn read() -> Self {
        Self {
            hostname: System::host_name().unwrap_or_default(),
            os: System::long_os_version()
                .or_else(|_| System::name())
                .unwrap_or_else(|_| std::env::consts::OS.to_owned()),
            arch: std::env::consts::ARCH.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_figures_are_sane() {
        let directory = tempfile::tempdir().expect("temp dir");
        let mut metrics = HostMetrics::new(directory.path()).expect("sysinfo");
        let heartbeat = metrics.heartbeat(0, Vec::new());
        assert!(heartbeat.memory_total_bytes > 0);
        assert!(heartbeat.memory_used_bytes > 0);
        assert!((0.0..=100.0).contains(&heartbeat.memory_percent));
        assert!((0.0..=100.0).contains(&heartbeat.cpu_percent));
        assert!(heartbeat.load_average >= 0.0);
    }
}
