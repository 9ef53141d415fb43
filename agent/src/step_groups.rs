//! The process groups of running steps, recorded in `<StateDirectory>/steps/` so that an agent
//! killed without warning (SIGKILL, OOM killer, power cut of the supervisor) ends its leftover
//! steps when it starts again: a step never outlives the agent that ran it for longer than the
//! agent's restart.
//!
//! Each record is a file named after the group id holding the boot id it was started under. A
//! record from an earlier boot is dropped unread: a reboot ended those processes already and the
//! id may belong to anyone now. Within one boot, Linux does not hand out an id while a group of
//! that id still has members, so a group found under a recorded id is the step's.

use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

const DIRECTORY: &str = "steps";

/// The recorded step groups of this agent.
#[derive(Debug)]
pub struct StepGroups {
    directory: PathBuf,
    boot_id: String,
}

/// The kernel's id of the current boot; empty where there is none (not Linux).
fn current_boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|text| text.trim().to_owned())
        .unwrap_or_default()
}

impl StepGroups {
    /// Opens (creating, mode 0700) `<state_directory>/steps`.
    pub fn open(state_directory: &Path) -> std::io::Result<StepGroups> {
        let directory = state_directory.join(DIRECTORY);
        crate::workdir::create_private_directory(&directory)?;
        Ok(StepGroups {
            directory,
            boot_id: current_boot_id(),
        })
    }

    fn path(&self, group: i32) -> PathBuf {
        self.directory.join(group.to_string())
    }

    /// Records a started step's group. Written before the step is waited for, so a kill at any
    /// later moment leaves the record behind.
    pub fn record(&self, group: i32) -> std::io::Result<()> {
        std::fs::write(self.path(group), &self.boot_id)
    }

    /// Forgets a group whose processes are all gone.
    pub fn forget(&self, group: i32) {
        let _ = std::fs::remove_file(self.path(group));
    }

    /// Kills what is left of the groups an earlier run of the agent recorded, and forgets them.
    /// Returns the groups that were signalled.
    pub fn kill_leftovers(&self) -> Vec<i32> {
        let Ok(entries) = std::fs::read_dir(&self.directory) else {
            return Vec::new();
        };
        let mut killed = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let group = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<i32>().ok())
                .filter(|group| *group > 1);
            let recorded_boot = std::fs::read_to_string(&path).unwrap_or_default();
            if let Some(group) = group
                && recorded_boot.trim() == self.boot_id
                && killpg(Pid::from_raw(group), Signal::SIGKILL).is_ok()
            {
                killed.push(group);
            }
            let _ = std::fs::remove_file(&path);
        }
        killed
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;

    use super::*;

    #[test]
    fn leftover_groups_are_killed_and_forgotten() {
        let dir = tempfile::tempdir().expect("temp dir");
        let groups = StepGroups::open(dir.path()).expect("open");
        let mut child = std::process::Command::new("sleep")
            .arg("300")
            .process_group(0)
            .spawn()
            .expect("spawn sleep");
        let group = i32::try_from(child.id()).expect("pid");
        groups.record(group).expect("record");
        // A record from another boot is dropped without a signal.
        std::fs::write(dir.path().join("steps/999999"), "another-boot").expect("write");
        let reopened = StepGroups::open(dir.path()).expect("reopen");
        assert_eq!(reopened.kill_leftovers(), [group]);
        let status = child.wait().expect("wait");
        assert!(!status.success(), "killed: {status:?}");
        assert_eq!(
            std::fs::read_dir(dir.path().join("steps"))
                .expect("read")
                .count(),
            0
        );
    }
}
