//! Agent configuration.
//!
//! The file is the original system's `appsettings.json` unchanged — an `"AgentConfiguration"`
//! section (or the original agent's `"Agent"` section) — or a TOML file with the same section and
//! keys. Environment variables override it in the .NET style: `AgentConfiguration__CustomerId=1`,
//! `AgentConfiguration__Tls__CaCertificate=/etc/cygnet/ca.pem` (also with the `Agent__` prefix).
//! Keys are case-insensitive. A missing or malformed key stops start-up with one line naming it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use config::{Value, ValueKind};

/// Section names accepted in the file and as environment prefixes, in order of preference.
const SECTIONS: [&str; 2] = ["AgentConfiguration", "Agent"];

/// Every key the agent reads (`Uuid` is the original agent's name for `AgentUuid`). Any other
/// key in the section or the environment stops start-up: a misspelt key ("Lables") silently
/// ignored would leave a setting at its default without a word.
const KEYS: [&str; 23] = [
    "CustomerId",
    "AgentUuid",
    "Uuid",
    "ServerUrl",
    "RegistrationToken",
    "RegistrationTokenFile",
    "ReenrolmentTokenFile",
    "RunStepsAs",
    "Name",
    "Location",
    "Labels",
    "WorkDirectory",
    "StateDirectory",
    "MaxConcurrentJobs",
    "Tls:CaCertificate",
    "Tls:ClientCertificate",
    "Tls:ClientKey",
    "KillGraceSeconds",
    "MaxLogBytesPerJob",
    "KeepWorkspaces",
    "MaxArtifactBytes",
    "EventBufferBytes",
    "MetricsListen",
];

/// TLS settings for reaching the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// CA certificate (PEM) that signed the server's certificate; the system roots when unset.
    pub ca_certificate: Option<PathBuf>,
    /// Client certificate (PEM) for servers that require mTLS; its CN must be the agent uuid.
    pub client_certificate: Option<PathBuf>,
    /// Private key (PEM) of the client certificate.
    pub client_key: Option<PathBuf>,
}

/// The validated agent configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    pub customer_id: i64,
    pub agent_uuid: String,
    pub server_url: String,
    pub registration_token: Option<String>,
    /// A file holding the registration token (`RegistrationTokenFile`), deleted once the agent
    /// registered: the secret does not stay on the host for a step to find.
    pub registration_token_file: Option<PathBuf>,
    /// A file holding a re-enrolment token an administrator issued (`ReenrolmentTokenFile`),
    /// read when registering and deleted once used.
    pub reenrolment_token_file: Option<PathBuf>,
    /// Whether `RegistrationToken` was written in the configuration file itself (rather than the
    /// environment): `check-config` and start-up warn, as the file stays readable to whoever
    /// can read it after registration.
    pub registration_token_in_file: bool,
    /// The unprivileged user steps run as (`RunStepsAs`); the agent's own user when unset.
    pub run_steps_as: Option<String>,
    pub name: String,
    pub location: String,
    pub labels: Vec<String>,
    pub work_directory: PathBuf,
    pub state_directory: PathBuf,
    pub max_concurrent_jobs: i32,
    pub tls: TlsSettings,
    /// Seconds between SIGTERM and SIGKILL when a step is cancelled or times out.
    pub kill_grace_seconds: u64,
    /// Output one job may log before it is truncated with a marker.
    pub max_log_bytes_per_job: u64,
    /// Finished workspaces kept per pipeline (0: removed when the job ends).
    pub keep_workspaces: usize,
    /// Largest artifact the agent uploads.
    pub max_artifact_bytes: u64,
    /// Memory for job events the server has not acknowledged; beyond it they spool to disk.
    pub event_buffer_bytes: usize,
    /// Where to serve Prometheus metrics (`MetricsListen`); none by default.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl AgentConfig {
    /// The server addresses of `ServerUrl`, in order: one, or several separated by commas
    /// (replicas; the agent moves to the next when a connection fails or ends).
    pub fn server_urls(&self) -> impl Iterator<Item = &str> {
        split_server_urls(&self.server_url)
    }

    /// The effective settings as `(key, value)` lines for `cygnet-agent check-config`, secrets
    /// hidden.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let path = |path: &Option<PathBuf>| {
            path.as_ref()
                .map_or_else(|| "(not set)".to_owned(), |path| path.display().to_string())
        };
        vec![
            ("CustomerId", self.customer_id.to_string()),
            ("AgentUuid", self.agent_uuid.clone()),
            ("Name", self.name.clone()),
            ("ServerUrl", self.server_url.clone()),
            (
                "RegistrationToken",
                match &self.registration_token {
                    Some(_) => "(set, hidden)".to_owned(),
                    None => "(not set)".to_owned(),
                },
            ),
            ("RegistrationTokenFile", path(&self.registration_token_file)),
            ("ReenrolmentTokenFile", path(&self.reenrolment_token_file)),
            (
                "RunStepsAs",
                self.run_steps_as
                    .clone()
                    .unwrap_or_else(|| "(not set: steps run as the agent's user)".to_owned()),
            ),
            ("Location", self.location.clone()),
            ("Labels", self.labels.join(", ")),
            ("WorkDirectory", self.work_directory.display().to_string()),
            ("StateDirectory", self.state_directory.display().to_string()),
            ("MaxConcurrentJobs", self.max_concurrent_jobs.to_string()),
            ("Tls:CaCertificate", path(&self.tls.ca_certificate)),
            ("Tls:ClientCertificate", path(&self.tls.client_certificate)),
            ("Tls:ClientKey", path(&self.tls.client_key)),
            ("KillGraceSeconds", self.kill_grace_seconds.to_string()),
            ("MaxLogBytesPerJob", self.max_log_bytes_per_job.to_string()),
            ("KeepWorkspaces", self.keep_workspaces.to_string()),
            ("MaxArtifactBytes", self.max_artifact_bytes.to_string()),
            ("EventBufferBytes", self.event_buffer_bytes.to_string()),
            (
                "MetricsListen",
                self.metrics_listen
                    .map_or_else(|| "(off)".to_owned(), |address| address.to_string()),
            ),
        ]
    }
}

/// A configuration problem, printed as one line.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(String);

fn key_error(key: &str, problem: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("AgentConfiguration:{key} {problem}"))
}

/// Lower-cased dotted key → value, from the file's section and the environment.
struct Settings {
    values: BTreeMap<String, Value>,
}

impl Settings {
    fn raw(&self, key: &str) -> Option<&Value> {
        self.values.get(&key.to_ascii_lowercase())
    }

    fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.raw(key).map(|value| &value.kind) {
            None | Some(ValueKind::Nil) => Ok(None),
            Some(ValueKind::String(text)) => Ok(Some(text.clone())),
            Some(ValueKind::I64(number)) => Ok(Some(number.to_string())),
            Some(ValueKind::U64(number)) => Ok(Some(number.to_string())),
            Some(ValueKind::Boolean(flag)) => Ok(Some(flag.to_string())),
            Some(_) => Err(key_error(key, "must be a string")),
        }
    }

    fn required_string(&self, key: &str) -> Result<String, ConfigError> {
        self.string(key)?
            .filter(|text| !text.trim().is_empty())
            .ok_or_else(|| key_error(key, "is required"))
    }

    fn integer(&self, key: &str) -> Result<Option<i64>, ConfigError> {
        match self.raw(key).map(|value| &value.kind) {
            None | Some(ValueKind::Nil) => Ok(None),
            Some(ValueKind::I64(number)) => Ok(Some(*number)),
            Some(ValueKind::U64(number)) => i64::try_from(*number)
                .map(Some)
                .map_err(|_| key_error(key, "is too large")),
            Some(ValueKind::String(text)) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| key_error(key, format!("must be an integer, not {text:?}"))),
            Some(_) => Err(key_error(key, "must be an integer")),
        }
    }

    fn path(&self, key: &str) -> Result<Option<PathBuf>, ConfigError> {
        Ok(self
            .string(key)?
            .filter(|text| !text.trim().is_empty())
            .map(PathBuf::from))
    }

    /// A list: a JSON/TOML array of strings, or one comma-separated string (environment).
    fn list(&self, key: &str) -> Result<Vec<String>, ConfigError> {
        match self.raw(key).map(|value| &value.kind) {
            None | Some(ValueKind::Nil) => Ok(Vec::new()),
            Some(ValueKind::String(text)) => Ok(text
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect()),
            Some(ValueKind::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(index, item)| match &item.kind {
                    ValueKind::String(text) => Ok(text.clone()),
                    _ => Err(key_error(&format!("{key}[{index}]"), "must be a string")),
                })
                .collect(),
            Some(_) => Err(key_error(key, "must be a list of strings")),
        }
    }
}

fn flatten(prefix: &str, value: Value, into: &mut BTreeMap<String, Value>) {
    match value.kind {
        ValueKind::Table(table) => {
            for (key, value) in table {
                let path = if prefix.is_empty() {
                    key.to_ascii_lowercase()
                } else {
                    format!("{prefix}.{}", key.to_ascii_lowercase())
                };
                flatten(&path, value, into);
            }
        }
        _ => {
            into.insert(prefix.to_owned(), value);
        }
    }
}

fn read_file(path: &Path) -> Result<BTreeMap<String, Value>, ConfigError> {
    if !path.is_file() {
        return Err(ConfigError(format!(
            "--config {}: file not found",
            path.display()
        )));
    }
    let format = match path.extension().and_then(|ext| ext.to_str()) {
        Some(ext) if ext.eq_ignore_ascii_case("toml") => config::FileFormat::Toml,
        _ => config::FileFormat::Json,
    };
    let root: Value = config::Config::builder()
        .add_source(config::File::from(path).format(format))
        .build()
        .and_then(|built| built.try_deserialize())
        .map_err(|error| ConfigError(format!("{}: {error}", path.display())))?;
    let ValueKind::Table(table) = root.kind else {
        return Err(ConfigError(format!("{}: not an object", path.display())));
    };
    let section = SECTIONS.iter().find_map(|name| {
        table
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.clone())
    });
    let Some(section) = section else {
        return Err(ConfigError(format!(
            "{}: no \"AgentConfiguration\" (or \"Agent\") section",
            path.display()
        )));
    };
    let mut values = BTreeMap::new();
    flatten("", section, &mut values);
    Ok(values)
}

/// `AgentConfiguration__Tls__CaCertificate` → `tls.cacertificate`.
fn environment_key(name: &str) -> Option<String> {
    SECTIONS.iter().find_map(|section| {
        let prefix = format!("{section}__");
        (name.len() > prefix.len() && name[..prefix.len()].eq_ignore_ascii_case(&prefix))
            .then(|| name[prefix.len()..].replace("__", ".").to_ascii_lowercase())
    })
}

impl AgentConfig {
    /// Loads the file (if any), applies the environment and validates.
    pub fn load(
        file: Option<&Path>,
        environment: impl IntoIterator<Item = (String, String)>,
    ) -> Result<AgentConfig, ConfigError> {
        let mut values = match file {
            Some(path) => read_file(path)?,
            None => BTreeMap::new(),
        };
        // Read before the environment is applied: an override leaves the file's copy in place.
        let registration_token_in_file = values.get("registrationtoken").is_some_and(
            |value| !matches!(&value.kind, ValueKind::String(text) if text.is_empty()),
        );
        for (name, value) in environment {
            if let Some(key) = environment_key(&name) {
                values.insert(key, Value::new(None, ValueKind::String(value)));
            }
        }
        let mut config = Settings { values }.validate()?;
        config.registration_token_in_file = registration_token_in_file;
        Ok(config)
    }

    /// Problems that do not stop the agent but weaken what a step can reach, one line each.
    pub fn warnings(&self, file: Option<&Path>) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.registration_token_in_file {
            warnings.push(
                "AgentConfiguration:RegistrationToken stays in the configuration file after registration: put it in RegistrationTokenFile (deleted once registered) instead".to_owned(),
            );
        }
        if self.run_steps_as.is_none() {
            warnings.push(
                "AgentConfiguration:RunStepsAs is not set: steps run as the agent's own user and can read its credential".to_owned(),
            );
        }
        #[cfg(unix)]
        if let Some(file) = file {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(metadata) = std::fs::metadata(file)
                && metadata.permissions().mode() & 0o007 != 0
            {
                warnings.push(format!(
                    "{} is open to every user (mode {:o}): make it 0600 (or 0640 with the agent's group)",
                    file.display(),
                    metadata.permissions().mode() & 0o777
                ));
            }
        }
        warnings
    }
}

impl Settings {
    /// Refuses a key the agent does not read, suggesting the one it resembles.
    fn refuse_unknown_keys(&self) -> Result<(), ConfigError> {
        let flat = |key: &str| key.replace(':', ".").to_ascii_lowercase();
        for key in self.values.keys() {
            if KEYS.iter().any(|known| flat(known) == *key) {
                continue;
            }
            let written = key.replace('.', ":");
            let closest = KEYS
                .iter()
                .map(|known| (edit_distance(&flat(known), key), known))
                .min()
                .filter(|(distance, _)| *distance <= 3);
            let hint = match closest {
                Some((_, known)) => format!(" (did you mean {known}?)"),
                None => format!(" (the settings are: {})", KEYS.join(", ")),
            };
            return Err(ConfigError(format!(
                "AgentConfiguration:{written} is not a setting of the agent{hint}"
            )));
        }
        Ok(())
    }

    fn validate(self) -> Result<AgentConfig, ConfigError> {
        self.refuse_unknown_keys()?;
        let customer_id = self
            .integer("CustomerId")?
            .ok_or_else(|| key_error("CustomerId", "is required"))?;
        if customer_id <= 0 {
            return Err(key_error("CustomerId", "must be a positive id"));
        }
        let agent_uuid = match self.string("AgentUuid")? {
            Some(uuid) => uuid,
            None => self
                .string("Uuid")?
                .ok_or_else(|| key_error("AgentUuid", "is required"))?,
        };
        let uuid_ok = !agent_uuid.is_empty()
            && agent_uuid.len() <= 128
            && agent_uuid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
        if !uuid_ok {
            return Err(key_error(
                "AgentUuid",
                "must be 1-128 characters of letters, digits, '.', '_', ':' and '-'",
            ));
        }
        let server_url = self.required_string("ServerUrl")?;
        let mut addresses = 0;
        for url in split_server_urls(&server_url) {
            addresses += 1;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(key_error(
                    "ServerUrl",
                    "must start with http:// or https:// (several addresses: separated by commas)",
                ));
            }
        }
        if addresses == 0 {
            return Err(key_error("ServerUrl", "is required"));
        }
        let max_concurrent_jobs = self.integer("MaxConcurrentJobs")?.unwrap_or(1);
        if !(1..=64).contains(&max_concurrent_jobs) {
            return Err(key_error("MaxConcurrentJobs", "must be between 1 and 64"));
        }
        let tls = TlsSettings {
            ca_certificate: self.path("Tls.CaCertificate")?,
            client_certificate: self.path("Tls.ClientCertificate")?,
            client_key: self.path("Tls.ClientKey")?,
        };
        for (key, path) in [
            ("Tls:CaCertificate", &tls.ca_certificate),
            ("Tls:ClientCertificate", &tls.client_certificate),
            ("Tls:ClientKey", &tls.client_key),
        ] {
            if let Some(path) = path
                && !path.is_file()
            {
                return Err(key_error(key, format!("file {} not found", path.display())));
            }
        }
        if tls.client_certificate.is_some() != tls.client_key.is_some() {
            return Err(key_error(
                "Tls:ClientCertificate",
                "and Tls:ClientKey must be set together",
            ));
        }
        let non_negative = |key: &str, default: i64, max: i64| -> Result<u64, ConfigError> {
            let value = self.integer(key)?.unwrap_or(default);
            if (0..=max).contains(&value) {
                Ok(value as u64)
            } else {
                Err(key_error(key, format!("must be between 0 and {max}")))
            }
        };
        let kill_grace_seconds = non_negative("KillGraceSeconds", 10, 3600)?;
        let max_log_bytes_per_job = non_negative("MaxLogBytesPerJob", 256 << 20, 1 << 40)?;
        let keep_workspaces = non_negative("KeepWorkspaces", 0, 1000)? as usize;
        let max_artifact_bytes = non_negative("MaxArtifactBytes", 1 << 30, 1 << 30)?;
        let event_buffer_bytes = non_negative("EventBufferBytes", 8 << 20, 1 << 32)? as usize;
        let metrics_listen = match self
            .string("MetricsListen")?
            .filter(|value| !value.is_empty())
        {
            None => None,
            Some(value) => Some(value.parse().map_err(|_| {
                key_error(
                    "MetricsListen",
                    format!("{value:?} is not an address such as 127.0.0.1:9465"),
                )
            })?),
        };
        Ok(AgentConfig {
            metrics_listen,
            kill_grace_seconds,
            max_log_bytes_per_job,
            keep_workspaces,
            max_artifact_bytes,
            event_buffer_bytes,
            customer_id,
            name: self.string("Name")?.unwrap_or_else(|| agent_uuid.clone()),
            agent_uuid,
            server_url,
            registration_token: self.string("RegistrationToken")?.filter(|t| !t.is_empty()),
            registration_token_file: self.path("RegistrationTokenFile")?,
            reenrolment_token_file: self.path("ReenrolmentTokenFile")?,
            registration_token_in_file: false,
            run_steps_as: self
                .string("RunStepsAs")?
                .map(|name| name.trim().to_owned())
                .filter(|name| !name.is_empty()),
            location: self.string("Location")?.unwrap_or_default(),
            labels: self.list("Labels")?,
            work_directory: self
                .path("WorkDirectory")?
                .unwrap_or_else(|| PathBuf::from("./cygnet-work")),
            state_directory: self
                .path("StateDirectory")?
                .unwrap_or_else(|| PathBuf::from("./cygnet-agent-state")),
            max_concurrent_jobs: max_concurrent_jobs as i32,
            tls,
        })
    }
}

/// Levenshtein distance over bytes (keys are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, &x) in a.as_bytes().iter().enumerate() {
        let mut current = vec![i + 1];
        for (j, &y) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(x != y);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// The addresses of a `ServerUrl` value: comma-separated, blanks around each ignored.
fn split_server_urls(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn the_seed_appsettings_json_loads_unchanged() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = write(
            dir.path(),
            "appsettings.json",
            r#"{"AgentConfiguration": {"CustomerId": 1, "AgentUuid": "acme-001", "ServerUrl": "http://api.cygnetci.com"}}"#,
        );
        let config = AgentConfig::load(Some(&file), env(&[])).expect("valid");
        assert_eq!(config.customer_id, 1);
        assert_eq!(config.agent_uuid, "acme-001");
        assert_eq!(config.name, "acme-001");
        assert_eq!(config.server_url, "http://api.cygnetci.com");
        assert_eq!(
            config.server_urls().collect::<Vec<_>>(),
            ["http://api.cygnetci.com"]
        );
        assert_eq!(config.max_concurrent_jobs, 1);
        assert_eq!(config.registration_token, None);
    }

    #[test]
    fn the_original_agent_section_and_environment_overrides() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = write(
            dir.path(),
            "appsettings.json",
            r#"{"Logging": {}, "Agent": {"customerid": 3, "AgentUuid": "tech-001", "ServerUrl": "http://x", "Labels": ["linux", "docker"]}}"#,
        );
        let config = AgentConfig::load(
            Some(&file),
            env(&[
                ("AgentConfiguration__CustomerId", "4"),
                ("Agent__Location", "Staging"),
                ("AGENTCONFIGURATION__MAXCONCURRENTJOBS", "3"),
                ("PATH", "/usr/bin"),
            ]),
        )
        .expect("valid");
        assert_eq!(config.customer_id, 4);
        assert_eq!(config.location, "Staging");
        assert_eq!(config.labels, ["linux", "docker"]);
        assert_eq!(config.max_concurrent_jobs, 3);
    }

    #[test]
    fn a_misspelt_key_is_refused_with_the_key_it_resembles() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = write(
            dir.path(),
            "appsettings.json",
            r#"{"AgentConfiguration": {"CustomerId": 1, "AgentUuid": "a", "ServerUrl": "http://x", "Lables": ["linux"]}}"#,
        );
        let error = AgentConfig::load(Some(&file), env(&[]))
            .expect_err("Lables is not a key")
            .to_string();
        assert!(
            error.contains(
                "AgentConfiguration:lables is not a setting of the agent (did you mean Labels?)"
            ),
            "{error}"
        );
        let error = AgentConfig::load(
            None,
            env(&[
                ("AgentConfiguration__CustomerId", "1"),
                ("AgentConfiguration__AgentUuid", "a"),
                ("AgentConfiguration__ServerUrl", "http://x"),
                ("AgentConfiguration__Tls__CaCertficate", "/ca.pem"),
            ]),
        )
        .expect_err("a misspelt nested key")
        .to_string();
        assert!(error.contains("did you mean Tls:CaCertificate?"), "{error}");
        let error = AgentConfig::load(
            None,
            env(&[
                ("AgentConfiguration__CustomerId", "1"),
                ("AgentConfiguration__Colour", "blue"),
            ]),
        )
        .expect_err("an unknown key, reported before a missing one")
        .to_string();
        assert!(error.contains("colour is not a setting"), "{error}");
        assert!(
            error.contains("the settings are: CustomerId, AgentUuid"),
            "{error}"
        );
    }

    #[test]
    fn toml_and_environment_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = write(
            dir.path(),
            "agent.toml",
            "[AgentConfiguration]\nCustomerId = 2\nAgentUuid = \"gc-1\"\nServerUrl = \"https://ci.example.com\"\nLabels = [\"arm\"]\n",
        );
        let config = AgentConfig::load(Some(&file), env(&[])).expect("toml");
        assert_eq!(
            (config.customer_id, config.labels.as_slice()),
            (2, &["arm".to_owned()][..])
        );
        let config = AgentConfig::load(
            None,
            env(&[
                ("AgentConfiguration__CustomerId", "9"),
                ("AgentConfiguration__AgentUuid", "env-1"),
                ("AgentConfiguration__ServerUrl", "http://localhost:50051"),
                ("AgentConfiguration__Labels", "a, b"),
            ]),
        )
        .expect("environment only");
        assert_eq!(config.labels, ["a", "b"]);
    }

    #[test]
    fn several_server_addresses_for_replicas() {
        let config = AgentConfig::load(
            None,
            env(&[
                ("AgentConfiguration__CustomerId", "9"),
                ("AgentConfiguration__AgentUuid", "env-1"),
                (
                    "AgentConfiguration__ServerUrl",
                    "http://replica-a:50051, http://replica-b:50051,",
                ),
            ]),
        )
        .expect("two addresses");
        assert_eq!(
            config.server_urls().collect::<Vec<_>>(),
            ["http://replica-a:50051", "http://replica-b:50051"]
        );
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (vec![], "CustomerId is required"),
            (
                vec![("AgentConfiguration__CustomerId", "one")],
                "CustomerId must be an integer",
            ),
            (
                vec![("AgentConfiguration__CustomerId", "0")],
                "CustomerId must be a positive id",
            ),
            (
                vec![("AgentConfiguration__CustomerId", "1")],
                "AgentUuid is required",
            ),
            (
                vec![
                    ("AgentConfiguration__CustomerId", "1"),
                    ("AgentConfiguration__AgentUuid", "a b"),
                ],
                "AgentUuid must be",
            ),
            (
                vec![
                    ("AgentConfiguration__CustomerId", "1"),
                    ("AgentConfiguration__AgentUuid", "a"),
                ],
                "ServerUrl is required",
            ),
            (
                vec![
                    ("AgentConfiguration__CustomerId", "1"),
                    ("AgentConfiguration__AgentUuid", "a"),
                    ("AgentConfiguration__ServerUrl", "ftp://x"),
                ],
                "ServerUrl must start with",
            ),
            (
                vec![
                    ("AgentConfiguration__CustomerId", "1"),
                    ("AgentConfiguration__AgentUuid", "a"),
                    ("AgentConfiguration__ServerUrl", "http://a:50051, b:50051"),
                ],
                "ServerUrl must start with",
            ),
            (
                vec![
                    ("AgentConfiguration__CustomerId", "1"),
                    ("AgentConfiguration__AgentUuid", "a"),
                    ("AgentConfiguration__ServerUrl", " , "),
                ],
                "ServerUrl is required",
            ),
            (
                vec![
                    ("AgentConfiguration__CustomerId", "1"),
                    ("AgentConfiguration__AgentUuid", "a"),
                    ("AgentConfiguration__ServerUrl", "http://x"),
                    ("AgentConfiguration__MaxConcurrentJobs", "100"),
                ],
                "MaxConcurrentJobs must be between",
            ),
            (
                vec![
                    ("AgentConfiguration__CustomerId", "1"),
                    ("AgentConfiguration__AgentUuid", "a"),
                    ("AgentConfiguration__ServerUrl", "http://x"),
                    (
                        "AgentConfiguration__Tls__CaCertificate",
                        "/nonexistent/ca.pem",
                    ),
                ],
                "Tls:CaCertificate file /nonexistent/ca.pem not found",
            ),
        ];
        for (pairs, expected) in cases {
            let error = AgentConfig::load(None, env(&pairs))
                .expect_err(expected)
                .to_string();
            assert!(
                error.contains(expected),
                "{error:?} should contain {expected:?}"
            );
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let file = write(dir.path(), "appsettings.json", r#"{"Other": {}}"#);
        let error = AgentConfig::load(Some(&file), env(&[]))
            .expect_err("no section")
            .to_string();
        assert!(error.contains("AgentConfiguration"), "{error}");
        let file = write(dir.path(), "broken.json", "{not json");
        assert!(AgentConfig::load(Some(&file), env(&[])).is_err());
    }

    #[test]
    fn the_examples_load() {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        // The example paths under /var/lib and /etc need not exist for loading, only TLS files
        // must, and those are commented out.
        let json = AgentConfig::load(Some(&examples.join("appsettings.json")), env(&[]))
            .expect("examples/appsettings.json");
        assert_eq!(
            (json.customer_id, json.agent_uuid.as_str()),
            (1, "acme-001")
        );
        assert_eq!(json.max_concurrent_jobs, 2);
        let toml = AgentConfig::load(Some(&examples.join("agent.toml")), env(&[]))
            .expect("examples/agent.toml");
        assert_eq!(toml.labels, ["linux", "docker"]);
        assert_eq!(toml.tls, TlsSettings::default());
    }

    #[test]
    fn credential_settings_and_their_warnings() {
        let dir = tempfile::tempdir().expect("temp dir");
        let in_file = write(
            dir.path(),
            "in-file.json",
            r#"{"AgentConfiguration": {"CustomerId": 1, "AgentUuid": "a", "ServerUrl": "http://x",
                "RegistrationToken": "cygr_x"}}"#,
        );
        let config = AgentConfig::load(Some(&in_file), env(&[])).expect("valid");
        assert!(config.registration_token_in_file);
        assert_eq!(config.run_steps_as, None);
        let warnings = config.warnings(None).join("\n");
        assert!(warnings.contains("RegistrationToken stays"), "{warnings}");
        assert!(warnings.contains("RunStepsAs is not set"), "{warnings}");

        // From the environment, with the steps' user and the token files: no warning.
        let clean = write(
            dir.path(),
            "clean.json",
            r#"{"AgentConfiguration": {"CustomerId": 1, "AgentUuid": "a", "ServerUrl": "http://x",
                "RunStepsAs": " builder ", "RegistrationTokenFile": "/run/token",
                "ReenrolmentTokenFile": "/run/reenrol"}}"#,
        );
        let config = AgentConfig::load(
            Some(&clean),
            env(&[("AgentConfiguration__RegistrationToken", "cygr_env")]),
        )
        .expect("valid");
        assert!(!config.registration_token_in_file);
        assert_eq!(config.run_steps_as.as_deref(), Some("builder"));
        assert_eq!(
            config.registration_token_file.as_deref(),
            Some(Path::new("/run/token"))
        );
        assert_eq!(
            config.reenrolment_token_file.as_deref(),
            Some(Path::new("/run/reenrol"))
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&clean, std::fs::Permissions::from_mode(0o600))
                .expect("chmod");
            assert_eq!(config.warnings(Some(&clean)), Vec::<String>::new());
            std::fs::set_permissions(&clean, std::fs::Permissions::from_mode(0o644))
                .expect("chmod");
            let warnings = config.warnings(Some(&clean)).join("\n");
            assert!(warnings.contains("open to every user"), "{warnings}");
        }
    }
}
