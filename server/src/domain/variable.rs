//! Variable groups and variables: what a valid key, value and group look like.

use chrono::{DateTime, Utc};

use super::validate::{ValidationError, optional_text, required_line};
use super::{CustomerId, EnvironmentId, UserId, VariableGroupId};

/// Longest key, characters.
pub const MAX_KEY_LEN: usize = 128;
/// Largest value, bytes.
pub const MAX_VALUE_BYTES: usize = 32 * 1024;
/// Shortest secret, characters: a shorter one would be masked everywhere it happens to occur
/// in a log, hiding half of it (and a guessable secret is no secret).
pub const MIN_SECRET_CHARS: usize = 6;
/// Longest group name, characters.
pub const MAX_GROUP_NAME: usize = 100;
/// Longest description, characters.
pub const MAX_DESCRIPTION: usize = 1000;

/// A name a step sees in its environment: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn key(field: &str, value: &str) -> Result<String, ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::new(field, "is required"));
    }
    if value.chars().count() > MAX_KEY_LEN {
        return Err(ValidationError::new(
            field,
            format!("must be at most {MAX_KEY_LEN} characters"),
        ));
    }
    let mut chars = value.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(ValidationError::new(
            field,
            format!(
                "{value:?} is not an environment variable name: letters, digits and '_', not starting with a digit"
            ),
        ));
    }
    Ok(value.to_owned())
}

/// A group's name and description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSettings {
    pub name: String,
    pub description: String,
}

impl GroupSettings {
    pub fn parse(name: &str, description: &str) -> Result<Self, ValidationError> {
        Ok(GroupSettings {
            name: required_line("name", name, MAX_GROUP_NAME)?,
            description: optional_text("description", description, MAX_DESCRIPTION)?,
        })
    }
}

/// What `SetVariable` stores.
#[derive(Clone, PartialEq, Eq)]
pub struct NewVariable {
    pub key: String,
    pub value: String,
    pub is_secret: bool,
    /// `None`: every environment.
    pub environment_id: Option<EnvironmentId>,
    pub description: String,
}

impl std::fmt::Debug for NewVariable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewVariable")
            .field("key", &self.key)
            .field("is_secret", &self.is_secret)
            .field("environment_id", &self.environment_id)
            .finish_non_exhaustive()
    }
}

/// `0` means every environment; anything else must be a positive id.
pub fn environment(field: &str, value: i64) -> Result<Option<EnvironmentId>, ValidationError> {
    match value {
        0 => Ok(None),
        id => EnvironmentId::parse(id, field).map(Some),
    }
}

impl NewVariable {
    pub fn parse(
        key_value: &str,
        value: &str,
        is_secret: bool,
        environment_id: i64,
        description: &str,
    ) -> Result<Self, ValidationError> {
        let key = key("key", key_value)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(ValidationError::new(
                "value",
                format!("must be at most {MAX_VALUE_BYTES} bytes"),
            ));
        }
        if value.contains('\0') {
            return Err(ValidationError::new(
                "value",
                "must not contain NUL characters",
            ));
        }
        if is_secret && value.chars().count() < MIN_SECRET_CHARS {
            return Err(ValidationError::new(
                "value",
                format!(
                    "of a secret must be at least {MIN_SECRET_CHARS} characters: a shorter one would be masked wherever it appears in logs"
                ),
            ));
        }
        Ok(NewVariable {
            key,
            value: value.to_owned(),
            is_secret,
            environment_id: environment("environment_id", environment_id)?,
            description: optional_text("description", description, MAX_DESCRIPTION)?,
        })
    }
}

/// The variables given with a new group: each valid, each (key, environment) once.
pub fn new_variables(
    inputs: impl IntoIterator<Item = (String, String, bool, i64, String)>,
) -> Result<Vec<NewVariable>, ValidationError> {
    let mut seen = std::collections::HashSet::new();
    let mut variables = Vec::new();
    for (index, (key, value, is_secret, environment_id, description)) in
        inputs.into_iter().enumerate()
    {
        let prefix = format!("variables[{index}]");
        let variable = NewVariable::parse(&key, &value, is_secret, environment_id, &description)
            .map_err(|error| error.within(&prefix))?;
        if !seen.insert((variable.key.clone(), variable.environment_id)) {
            let scope = match variable.environment_id {
                Some(environment) => format!("environment {environment}"),
                None => "every environment".to_owned(),
            };
            return Err(ValidationError::new(
                format!("{prefix}.key"),
                format!("{} for {scope} is given twice", variable.key),
            ));
        }
        variables.push(variable);
    }
    Ok(variables)
}

/// A stored variable as callers see it: a secret's value is never included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub key: String,
    /// `None` for a secret.
    pub value: Option<String>,
    pub is_secret: bool,
    pub environment_id: Option<EnvironmentId>,
    pub description: String,
    pub updated_at: DateTime<Utc>,
    pub updated_by: UserId,
}

/// A group with its variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableGroup {
    pub id: VariableGroupId,
    pub customer_id: CustomerId,
    pub settings: GroupSettings,
    pub variables: Vec<Variable>,
    pub created_by: UserId,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_environment_variable_names() {
        for good in ["A", "_X", "DB_PASSWORD", "a1_b2"] {
            assert_eq!(key("key", good).ok().as_deref(), Some(good));
        }
        for bad in ["", "1ABC", "A-B", "A B", "É", "A=B", &"K".repeat(129)] {
            let error = key("key", bad).expect_err(bad);
            assert_eq!(error.field(), "key");
        }
    }

    #[test]
    fn values_are_bounded_and_secrets_long_enough() {
        let short = NewVariable::parse("TOKEN", "abc12", true, 0, "").expect_err("short secret");
        assert_eq!(short.field(), "value");
        assert!(short.to_string().contains("at least 6"));
        assert!(NewVariable::parse("TOKEN", "abc12", false, 0, "").is_ok());
        assert!(NewVariable::parse("TOKEN", "abc123", true, 0, "").is_ok());
        let big = "x".repeat(MAX_VALUE_BYTES + 1);
        assert_eq!(
            NewVariable::parse("BIG", &big, false, 0, "")
                .expect_err("big")
                .field(),
            "value"
        );
        assert_eq!(
            NewVariable::parse("K", "v", false, -3, "")
                .expect_err("environment")
                .field(),
            "environment_id"
        );
        let secret = NewVariable::parse("K", "hunter2-secret", true, 0, "").expect("ok");
        assert!(
            !format!("{secret:?}").contains("hunter2"),
            "Debug hides values"
        );
    }
}
