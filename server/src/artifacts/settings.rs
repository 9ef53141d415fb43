//! Where artifacts are stored: `[artifacts]` in the server's configuration.
//!
//! ```toml
//! [artifacts]
//! store = "s3"                      # "local" (default): <data_dir>/artifacts
//! bucket = "cygnet-artifacts"
//! endpoint = "https://s3.example.com:9000"   # any S3-compatible store; AWS when unset
//! region = "eu-west-1"              # default us-east-1
//! virtual_hosted_style = false      # default: path-style requests (https://host/bucket/key)
//! # Credentials: access_key_id + secret_access_key (CYGNET_ARTIFACTS__ACCESS_KEY_ID, …), or a
//! # file in the AWS shared-credentials format ([default] aws_access_key_id = …).
//! credentials_file = "/etc/cygnet/s3-credentials"
//! ```

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::ConfigError;

/// `[artifacts]` as written.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawArtifacts {
    store: Option<String>,
    endpoint: Option<String>,
    bucket: Option<String>,
    region: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    credentials_file: Option<PathBuf>,
    virtual_hosted_style: Option<bool>,
}

/// Where artifacts are stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ArtifactStorage {
    /// Files under `<data_dir>/artifacts` (one server, or a shared filesystem).
    #[default]
    Local,
    /// An S3-compatible object store shared by every replica.
    S3(S3Settings),
}

/// An S3-compatible bucket and how to reach it.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Settings {
    /// `http(s)://host[:port]`; AWS's endpoint for the region when unset.
    pub endpoint: Option<String>,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// `https://bucket.host/key` instead of `https://host/bucket/key`.
    pub virtual_hosted_style: bool,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .finish()
    }
}

fn error(key: &str, problem: impl std::fmt::Display) -> ConfigError {
    let env = format!(
        "CYGNET_ARTIFACTS__{}",
        key.trim_start_matches("artifacts.").to_ascii_uppercase()
    );
    ConfigError::key(key, &env, problem)
}

impl RawArtifacts {
    pub(crate) fn validate(self) -> Result<ArtifactStorage, ConfigError> {
        let store = self
            .store
            .as_deref()
            .map(str::trim)
            .unwrap_or_default()
            .to_ascii_lowercase();
        match store.as_str() {
            "" | "local" => Ok(ArtifactStorage::Local),
            "s3" => self.validate_s3().map(ArtifactStorage::S3),
            other => Err(error(
                "artifacts.store",
                format!("{other:?} is not one of local, s3"),
            )),
        }
    }

    fn validate_s3(self) -> Result<S3Settings, ConfigError> {
        let bucket = self
            .bucket
            .map(|bucket| bucket.trim().to_owned())
            .filter(|bucket| !bucket.is_empty())
            .ok_or_else(|| {
                error(
                    "artifacts.bucket",
                    "is required with artifacts.store = \"s3\"",
                )
            })?;
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !valid_bucket {
            return Err(error(
                "artifacts.bucket",
                "must be 3-63 characters of lowercase letters, digits, '.' and '-'",
            ));
        }
        let endpoint = match self
            .endpoint
            .map(|e| e.trim().trim_end_matches('/').to_owned())
        {
            Some(endpoint) if endpoint.is_empty() => None,
            Some(endpoint)
                if endpoint.starts_with("http://") || endpoint.starts_with("https://") =>
            {
                Some(endpoint)
            }
            Some(_) => {
                return Err(error(
                    "artifacts.endpoint",
                    "must start with http:// or https://",
                ));
            }
            None => None,
        };
        let region = self
            .region
            .map(|region| region.trim().to_owned())
            .filter(|region| !region.is_empty())
            .unwrap_or_else(|| "us-east-1".to_owned());
        let given = |value: Option<String>| value.filter(|value| !value.trim().is_empty());
        let (access_key_id, secret_access_key) = match (
            given(self.access_key_id),
            given(self.secret_access_key),
            self.credentials_file,
        ) {
            (Some(id), Some(secret), _) => (id, secret),
            (Some(_), None, _) => {
                return Err(error(
                    "artifacts.secret_access_key",
                    "is required with artifacts.access_key_id",
                ));
            }
            (None, Some(_), _) => {
                return Err(error(
                    "artifacts.access_key_id",
                    "is required with artifacts.secret_access_key",
                ));
            }
            (None, None, Some(file)) => read_credentials_file(&file)?,
            (None, None, None) => {
                return Err(error(
                    "artifacts.access_key_id",
                    "the store needs credentials: artifacts.access_key_id and \
                     artifacts.secret_access_key, or artifacts.credentials_file",
                ));
            }
        };
        Ok(S3Settings {
            endpoint,
            bucket,
            region,
            access_key_id,
            secret_access_key,
            virtual_hosted_style: self.virtual_hosted_style.unwrap_or(false),
        })
    }
}

/// The `[default]` profile (or the only one) of a file in the AWS shared-credentials format.
fn read_credentials_file(file: &std::path::Path) -> Result<(String, String), ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|problem| {
        error(
            "artifacts.credentials_file",
            format!("cannot read {}: {problem}", file.display()),
        )
    })?;
    let mut section = String::from("default");
    let (mut id, mut secret) = (None, None);
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_owned();
            continue;
        }
        if section != "default" {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            match key.trim() {
                "aws_access_key_id" => id = Some(value.trim().to_owned()),
                "aws_secret_access_key" => secret = Some(value.trim().to_owned()),
                _ => {}
            }
        }
    }
    match (
        id.filter(|v| !v.is_empty()),
        secret.filter(|v| !v.is_empty()),
    ) {
        (Some(id), Some(secret)) => Ok((id, secret)),
        _ => Err(error(
            "artifacts.credentials_file",
            format!(
                "{} has no aws_access_key_id and aws_secret_access_key in its [default] profile",
                file.display()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> RawArtifacts {
        let mut raw = RawArtifacts::default();
        for (key, value) in pairs {
            let value = Some((*value).to_owned());
            match *key {
                "store" => raw.store = value,
                "endpoint" => raw.endpoint = value,
                "bucket" => raw.bucket = value,
                "region" => raw.region = value,
                "access_key_id" => raw.access_key_id = value,
                "secret_access_key" => raw.secret_access_key = value,
                "credentials_file" => raw.credentials_file = value.map(PathBuf::from),
                other => panic!("unknown key {other}"),
            }
        }
        raw
    }

    #[test]
    fn local_by_default_and_s3_with_everything_it_needs() {
        assert_eq!(
            raw(&[]).validate().expect("default"),
            ArtifactStorage::Local
        );
        let s3 = raw(&[
            ("store", "S3"),
            ("bucket", "cygnet-artifacts"),
            ("endpoint", "http://127.0.0.1:9000/"),
            ("access_key_id", "id"),
            ("secret_access_key", "secret"),
        ])
        .validate()
        .expect("s3");
        let ArtifactStorage::S3(settings) = s3 else {
            panic!("s3 expected")
        };
        assert_eq!(settings.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(settings.region, "us-east-1");
        assert!(
            !format!("{settings:?}").contains("secret\""),
            "{settings:?}"
        );
    }

    #[test]
    fn errors_name_the_key() {
        for (pairs, key) in [
            (vec![("store", "ftp")], "artifacts.store"),
            (vec![("store", "s3")], "artifacts.bucket"),
            (
                vec![("store", "s3"), ("bucket", "Bad_Bucket")],
                "artifacts.bucket",
            ),
            (
                vec![("store", "s3"), ("bucket", "b-1"), ("endpoint", "s3.local")],
                "artifacts.endpoint",
            ),
            (
                vec![("store", "s3"), ("bucket", "b-1")],
                "artifacts.access_key_id",
            ),
            (
                vec![("store", "s3"), ("bucket", "b-1"), ("access_key_id", "id")],
                "artifacts.secret_access_key",
            ),
            (
                vec![
                    ("store", "s3"),
                    ("bucket", "b-1"),
                    ("credentials_file", "/nonexistent/credentials"),
                ],
                "artifacts.credentials_file",
            ),
        ] {
            let message = raw(&pairs).validate().expect_err(key).to_string();
            assert!(message.contains(&format!(": {key} (")), "{key}: {message}");
        }
    }

    #[test]
    fn credentials_from_a_shared_credentials_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("credentials");
        std::fs::write(
            &file,
            "[other]\naws_access_key_id = no\n\n[default]\n# the one\naws_access_key_id = AKID\naws_secret_access_key = s3cret\n",
        )
        .expect("write");
        let storage = raw(&[
            ("store", "s3"),
            ("bucket", "b-1"),
            ("credentials_file", file.to_str().expect("utf-8")),
        ])
        .validate()
        .expect("from file");
        let ArtifactStorage::S3(settings) = storage else {
            panic!("s3 expected")
        };
        assert_eq!(
            (
                settings.access_key_id.as_str(),
                settings.secret_access_key.as_str()
            ),
            ("AKID", "s3cret")
        );
    }
}
