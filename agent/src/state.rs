//! The agent's credential, kept in `<StateDirectory>/agent.json` with mode 0600 so a restart
//! reuses it instead of registering again.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const STATE_FILE: &str = "agent.json";

/// What registration gave the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentState {
    pub agent_id: i64,
    pub customer_id: i64,
    pub agent_uuid: String,
    pub server_url: String,
    pub credential: String,
}

impl AgentState {
    /// Whether this state was issued for the configured identity; a changed customer, uuid or
    /// server means registering again.
    pub fn matches(&self, customer_id: i64, agent_uuid: &str, server_url: &str) -> bool {
        self.customer_id == customer_id
            && self.agent_uuid == agent_uuid
            && self.server_url == server_url
    }
}

/// Reads and writes the state file.
pub struct StateStore {
    directory: PathBuf,
}

impl StateStore {
    /// Creates the state directory (mode 0700) if needed, and tightens a state file an older
    /// agent left with a looser mode to 0600.
    pub fn open(directory: &Path) -> std::io::Result<Self> {
        crate::workdir::create_private_directory(directory)?;
        let store = Self {
            directory: directory.to_path_buf(),
        };
        #[cfg(unix)]
        if store.path().exists() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(store.path(), std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(store)
    }

    fn path(&self) -> PathBuf {
        self.directory.join(STATE_FILE)
    }

    /// The stored state, if any. A damaged file reads as none (the agent registers again).
    pub fn load(&self) -> Option<AgentState> {
        let text = std::fs::read_to_string(self.path()).ok()?;
        match serde_json::from_str(&text) {
            Ok(state) => Some(state),
            Err(error) => {
                tracing::warn!(%error, path = %self.path().display(), "ignoring unreadable agent state");
                None
            }
        }
    }

    /// Replaces the stored state atomically (write to a temporary file, then rename).
    pub fn save(&self, state: &AgentState) -> std::io::Result<()> {
        let temporary = self.directory.join(format!("{STATE_FILE}.tmp"));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&temporary)?;
        file.write_all(serde_json::to_string_pretty(state)?.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, self.path())
    }

    /// Forgets the credential (it was revoked).
    pub fn clear(&self) -> std::io::Result<()> {
        match std::fs::remove_file(self.path()) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_privately() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = StateStore::open(&dir.path().join("state")).expect("open");
        assert_eq!(store.load(), None);
        let state = AgentState {
            agent_id: 4,
            customer_id: 1,
            agent_uuid: "acme-001".into(),
            server_url: "http://localhost:50051".into(),
            credential: "cyga_secret".into(),
        };
        store.save(&state).expect("save");
        assert_eq!(store.load(), Some(state.clone()));
        assert!(state.matches(1, "acme-001", "http://localhost:50051"));
        assert!(!state.matches(2, "acme-001", "http://localhost:50051"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("state/agent.json"))
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A state file left readable by others is made private again when the agent starts.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.path().join("state/agent.json");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
                .expect("loosen");
            StateStore::open(&dir.path().join("state")).expect("reopen");
            let mode = std::fs::metadata(&path)
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        store.clear().expect("clear");
        assert_eq!(store.load(), None);
        store.clear().expect("clearing twice is fine");
    }
}
