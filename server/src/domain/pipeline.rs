//! Pipeline definitions: steps, parameters, agent selectors; their validation, and how a run's
//! parameter values are checked against them.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use super::validate::{ValidationError, optional_text, required_line};
use super::{AgentId, agent::labels};

/// Most steps in one pipeline.
pub const MAX_STEPS: usize = 100;
/// Most parameters in one pipeline.
pub const MAX_PARAMETERS: usize = 50;
/// Largest step command, bytes.
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;
/// Longest any execution or step may run, seconds.
pub const MAX_TIMEOUT_SECONDS: i32 = 86_400;
/// Pipeline timeout when none is given, seconds.
pub const DEFAULT_TIMEOUT_SECONDS: i32 = 3600;
/// Largest parameter value, bytes.
pub const MAX_PARAMETER_VALUE_BYTES: usize = 4096;

/// The interpreter of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shell {
    Bash,
    Sh,
    Pwsh,
    Cmd,
}

/// The type of a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParameterType {
    String,
    Number,
    Boolean,
    Choice,
}

/// One step of a pipeline, as stored (JSON) and sent to agents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepDefinition {
    pub name: String,
    pub command: String,
    pub shell: Shell,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// 0 means the pipeline's timeout.
    #[serde(default)]
    pub timeout_seconds: i32,
    #[serde(default)]
    pub continue_on_error: bool,
    #[serde(default)]
    pub artifacts: Vec<String>,
}

/// One parameter of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParameterDefinition {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ParameterType,
    #[serde(default)]
    pub default_value: String,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub choices: Vec<String>,
}

/// Which agents may run a pipeline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentSelector {
    pub agent_id: Option<AgentId>,
    pub labels: Vec<String>,
}

impl AgentSelector {
    /// A human description for queue reasons, e.g. `agent 3` or `labels [linux, docker]`.
    pub fn describe(&self) -> String {
        match (self.agent_id, self.labels.is_empty()) {
            (Some(agent_id), true) => format!("agent {agent_id}"),
            (Some(agent_id), false) => {
                format!("agent {agent_id} with labels [{}]", self.labels.join(", "))
            }
            (None, true) => "any agent".to_owned(),
            (None, false) => format!("labels [{}]", self.labels.join(", ")),
        }
    }
}

/// A validated pipeline definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineDefinition {
    pub name: String,
    pub description: String,
    pub selector: AgentSelector,
    pub steps: Vec<StepDefinition>,
    pub parameters: Vec<ParameterDefinition>,
    pub timeout_seconds: i32,
    /// Variable groups whose variables the jobs get, in order (a later group wins).
    pub variable_group_ids: Vec<super::VariableGroupId>,
}

/// Most variable groups one pipeline may name.
pub const MAX_VARIABLE_GROUPS: usize = 20;

/// Positive ids, no repeats, at most [`MAX_VARIABLE_GROUPS`].
pub fn variable_group_ids(
    field: &str,
    ids: &[i64],
) -> Result<Vec<super::VariableGroupId>, ValidationError> {
    if ids.len() > MAX_VARIABLE_GROUPS {
        return Err(ValidationError::new(
            field,
            format!("may name at most {MAX_VARIABLE_GROUPS} groups"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    ids.iter()
        .map(|id| {
            if !seen.insert(*id) {
                return Err(ValidationError::new(
                    field,
                    format!("names group {id} twice"),
                ));
            }
            super::VariableGroupId::parse(*id, field)
        })
        .collect()
}

/// A validated partial update of a pipeline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PipelinePatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub selector: Option<AgentSelector>,
    pub steps: Option<Vec<StepDefinition>>,
    pub parameters: Option<Vec<ParameterDefinition>>,
    pub variable_group_ids: Option<Vec<super::VariableGroupId>>,
    pub timeout_seconds: Option<i32>,
}

/// What a request says about a step, before validation.
#[derive(Debug, Clone, Default)]
pub struct StepInput {
    pub name: String,
    pub command: String,
    pub shell: Option<Shell>,
    pub env: BTreeMap<String, String>,
    pub timeout_seconds: i32,
    pub continue_on_error: bool,
    pub artifacts: Vec<String>,
}

/// What a request says about a parameter, before validation.
#[derive(Debug, Clone, Default)]
pub struct ParameterInput {
    pub name: String,
    pub kind: Option<ParameterType>,
    pub default_value: String,
    pub required: bool,
    pub description: String,
    pub choices: Vec<String>,
}

/// A pipeline name: 1-200 characters, one line.
pub fn pipeline_name(field: &str, value: &str) -> Result<String, ValidationError> {
    required_line(field, value, 200)
}

/// An environment variable or parameter name: letters, digits and `_`, not starting with a
/// digit, 1-64 characters.
fn identifier(field: &str, value: &str, what: &str) -> Result<String, ValidationError> {
    let valid = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !value.as_bytes()[0].is_ascii_digit();
    if valid {
        Ok(value.to_owned())
    } else {
        Err(ValidationError::new(
            field,
            format!("must be a {what}: 1-64 letters, digits and '_', not starting with a digit"),
        ))
    }
}

/// A timeout in seconds: `0..=86400`, where 0 means "inherit" only when `zero_allowed`.
pub fn timeout_seconds(
    field: &str,
    value: i32,
    zero_allowed: bool,
) -> Result<i32, ValidationError> {
    let min = if zero_allowed { 0 } else { 1 };
    if (min..=MAX_TIMEOUT_SECONDS).contains(&value) {
        Ok(value)
    } else {
        Err(ValidationError::new(
            field,
            format!("must be between {min} and {MAX_TIMEOUT_SECONDS} seconds"),
        ))
    }
}

/// An artifact path or glob: relative, no `..`, at most 1024 characters.
fn artifact_pattern(field: &str, value: &str) -> Result<String, ValidationError> {
    let escapes = value.starts_with('/')
        || value.starts_with('\\')
        || value.contains(':')
        || value.split(['/', '\\']).any(|part| part == "..");
    if value.trim().is_empty() || value.len() > 1024 || escapes || value.contains('\0') {
        return Err(ValidationError::new(
            field,
            "must be a relative path or glob inside the workspace (no '..', not absolute)",
        ));
    }
    Ok(value.to_owned())
}

/// Validates the steps of a pipeline.
pub fn steps(inputs: Vec<StepInput>) -> Result<Vec<StepDefinition>, ValidationError> {
    if inputs.is_empty() {
        return Err(ValidationError::new("steps", "must have at least one step"));
    }
    if inputs.len() > MAX_STEPS {
        return Err(ValidationError::new(
            "steps",
            format!("must have at most {MAX_STEPS} steps"),
        ));
    }
    let mut names = HashSet::new();
    inputs
        .into_iter()
        .enumerate()
        .map(|(index, input)| {
            let field = |name: &str| format!("steps[{index}].{name}");
            let name = required_line(&field("name"), &input.name, 100)?;
            if !names.insert(name.to_ascii_lowercase()) {
                return Err(ValidationError::new(
                    field("name"),
                    format!("{name:?} is used by an earlier step"),
                ));
            }
            if input.command.trim().is_empty() {
                return Err(ValidationError::new(field("command"), "is required"));
            }
            if input.command.len() > MAX_COMMAND_BYTES {
                return Err(ValidationError::new(
                    field("command"),
                    format!("must be at most {MAX_COMMAND_BYTES} bytes"),
                ));
            }
            if input.command.contains('\0') {
                return Err(ValidationError::new(
                    field("command"),
                    "must not contain NUL bytes",
                ));
            }
            if input.env.len() > 100 {
                return Err(ValidationError::new(
                    field("env"),
                    "must have at most 100 variables",
                ));
            }
            for (key, value) in &input.env {
                identifier(&format!("steps[{index}].env[{key}]"), key, "variable name")?;
                if value.len() > 32 * 1024 || value.contains('\0') {
                    return Err(ValidationError::new(
                        format!("steps[{index}].env[{key}]"),
                        "must be at most 32 KiB without NUL bytes",
                    ));
                }
            }
            if input.artifacts.len() > 32 {
                return Err(ValidationError::new(
                    field("artifacts"),
                    "must have at most 32 entries",
                ));
            }
            let artifacts = input
                .artifacts
                .iter()
                .enumerate()
                .map(|(artifact, pattern)| {
                    artifact_pattern(&format!("steps[{index}].artifacts[{artifact}]"), pattern)
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(StepDefinition {
                name,
                command: input.command,
                shell: input.shell.unwrap_or(Shell::Bash),
                env: input.env,
                timeout_seconds: timeout_seconds(
                    &field("timeout_seconds"),
                    input.timeout_seconds,
                    true,
                )?,
                continue_on_error: input.continue_on_error,
                artifacts,
            })
        })
        .collect()
}

/// Checks a value against a parameter's type.
fn check_value(
    field: &str,
    parameter: &ParameterDefinition,
    value: &str,
) -> Result<(), ValidationError> {
    if value.len() > MAX_PARAMETER_VALUE_BYTES || value.contains('\0') {
        return Err(ValidationError::new(
            field,
            format!("must be at most {MAX_PARAMETER_VALUE_BYTES} bytes without NUL bytes"),
        ));
    }
    match parameter.kind {
        ParameterType::String => Ok(()),
        ParameterType::Number => value
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|number| number.is_finite() && value.trim() == value)
            .map(|_| ())
            .ok_or_else(|| ValidationError::new(field, format!("must be a number, not {value:?}"))),
        ParameterType::Boolean => match value {
            "true" | "false" => Ok(()),
            _ => Err(ValidationError::new(
                field,
                format!("must be true or false, not {value:?}"),
            )),
        },
        ParameterType::Choice => {
            if parameter.choices.iter().any(|choice| choice == value) {
                Ok(())
            } else {
                Err(ValidationError::new(
                    field,
                    format!(
                        "must be one of [{}], not {value:?}",
                        parameter.choices.join(", ")
                    ),
                ))
            }
        }
    }
}

/// Validates the parameters of a pipeline.
pub fn parameters(
    inputs: Vec<ParameterInput>,
) -> Result<Vec<ParameterDefinition>, ValidationError> {
    if inputs.len() > MAX_PARAMETERS {
        return Err(ValidationError::new(
            "parameters",
            format!("must have at most {MAX_PARAMETERS} parameters"),
        ));
    }
    let mut names = HashSet::new();
    inputs
        .into_iter()
        .enumerate()
        .map(|(index, input)| {
            let field = |name: &str| format!("parameters[{index}].{name}");
            let name = identifier(&field("name"), &input.name, "parameter name")?;
            if !names.insert(name.to_ascii_lowercase()) {
                return Err(ValidationError::new(
                    field("name"),
                    format!(
                        "{name:?} is used by an earlier parameter (names are case-insensitive)"
                    ),
                ));
            }
            let kind = input.kind.unwrap_or(ParameterType::String);
            if kind == ParameterType::Choice {
                if input.choices.is_empty() {
                    return Err(ValidationError::new(
                        field("choices"),
                        "are required for a choice parameter",
                    ));
                }
                let mut seen = HashSet::new();
                for (choice_index, choice) in input.choices.iter().enumerate() {
                    if choice.is_empty() || choice.len() > 200 || !seen.insert(choice) {
                        return Err(ValidationError::new(
                            format!("parameters[{index}].choices[{choice_index}]"),
                            "must be a unique, non-empty value of at most 200 characters",
                        ));
                    }
                }
            } else if !input.choices.is_empty() {
                return Err(ValidationError::new(
                    field("choices"),
                    "are only allowed for choice parameters",
                ));
            }
            let parameter = ParameterDefinition {
                name,
                kind,
                default_value: input.default_value,
                required: input.required,
                description: optional_text(&field("description"), &input.description, 1000)?,
                choices: input.choices,
            };
            if !parameter.default_value.is_empty() {
                check_value(
                    &field("default_value"),
                    &parameter,
                    &parameter.default_value,
                )?;
            }
            Ok(parameter)
        })
        .collect()
}

/// Validates an agent selector's labels (the agent id is checked against the customer by the
/// store).
pub fn selector(
    agent_id: Option<AgentId>,
    selector_labels: &[String],
) -> Result<AgentSelector, ValidationError> {
    Ok(AgentSelector {
        agent_id,
        labels: labels("agent_selector.labels", selector_labels)?,
    })
}

/// The first of `names` that names one of the pipeline's secret variables, whatever the case of
/// either: parameter names match their definitions case-insensitively, and `{{NAME}}` does
/// too, so a parameter so named would stand in for the secret.
pub fn named_like_a_secret<'a>(
    names: impl IntoIterator<Item = &'a str>,
    secret_keys: &[String],
) -> Option<&'a str> {
    names.into_iter().find(|name| {
        secret_keys
            .iter()
            .any(|secret| secret.eq_ignore_ascii_case(name))
    })
}

/// Refuses given parameters named like a secret variable of the pipeline (see
/// [`named_like_a_secret`]), naming the parameter.
pub fn check_not_secrets(
    given: &BTreeMap<String, String>,
    secret_keys: &[String],
) -> Result<(), ValidationError> {
    match named_like_a_secret(given.keys().map(String::as_str), secret_keys) {
        Some(name) => Err(ValidationError::new(
            format!("parameters[{name}]"),
            "is a secret variable of this pipeline and cannot be overridden",
        )),
        None => Ok(()),
    }
}

/// The definition of the parameter `name` (case-insensitively), or the refusal naming it.
pub fn definition_named<'a>(
    definitions: &'a [ParameterDefinition],
    name: &str,
) -> Result<&'a ParameterDefinition, ValidationError> {
    definitions
        .iter()
        .find(|definition| definition.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            ValidationError::new(
                format!("parameters[{name}]"),
                "is not a parameter of this pipeline",
            )
        })
}

/// Checks values given for some of a pipeline's parameters (names known, values fitting, none
/// twice) without requiring the rest, and returns them under their declared names.
pub fn given_parameters(
    definitions: &[ParameterDefinition],
    given: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ValidationError> {
    let mut resolved = BTreeMap::new();
    for (name, value) in given {
        let field = format!("parameters[{name}]");
        let definition = definition_named(definitions, name)?;
        check_value(&field, definition, value)?;
        if resolved
            .insert(definition.name.clone(), value.clone())
            .is_some()
        {
            return Err(ValidationError::new(
                &field,
                "is given twice (names are case-insensitive)",
            ));
        }
    }
    Ok(resolved)
}

/// Checks a run's values against the pipeline's parameters and returns the values to use:
/// names as defined (given case-insensitively), defaults filled in.
pub fn resolve_parameters(
    definitions: &[ParameterDefinition],
    given: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ValidationError> {
    let mut resolved = given_parameters(definitions, given)?;
    for definition in definitions {
        if resolved.contains_key(&definition.name) {
            continue;
        }
        if !definition.default_value.is_empty() {
            resolved.insert(definition.name.clone(), definition.default_value.clone());
        } else if definition.required {
            return Err(ValidationError::new(
                format!("parameters[{}]", definition.name),
                "is required",
            ));
        }
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, command: &str) -> StepInput {
        StepInput {
            name: name.into(),
            command: command.into(),
            ..StepInput::default()
        }
    }

    fn parameter(name: &str, kind: ParameterType) -> ParameterInput {
        ParameterInput {
            name: name.into(),
            kind: Some(kind),
            ..ParameterInput::default()
        }
    }

    #[test]
    fn steps_are_checked_by_field() {
        assert_eq!(
            steps(vec![step("build", "make")]).expect("valid")[0].shell,
            Shell::Bash
        );
        let error = |inputs| steps(inputs).expect_err("invalid").field().to_owned();
        assert_eq!(error(vec![]), "steps");
        assert_eq!(error(vec![step("", "make")]), "steps[0].name");
        assert_eq!(error(vec![step("a", "x"), step("A", "y")]), "steps[1].name");
        assert_eq!(error(vec![step("a", "  ")]), "steps[0].command");
        let mut bad_env = step("a", "x");
        bad_env.env.insert("1X".into(), "v".into());
        assert_eq!(error(vec![bad_env]), "steps[0].env[1X]");
        let mut escaping = step("a", "x");
        escaping.artifacts = vec!["dist/*.tar".into(), "../secret".into()];
        assert_eq!(error(vec![escaping]), "steps[0].artifacts[1]");
        let mut absolute = step("a", "x");
        absolute.artifacts = vec!["/etc/passwd".into()];
        assert_eq!(error(vec![absolute]), "steps[0].artifacts[0]");
        let mut slow = step("a", "x");
        slow.timeout_seconds = -1;
        assert_eq!(error(vec![slow]), "steps[0].timeout_seconds");
    }

    #[test]
    fn parameters_are_checked_by_field() {
        let error = |inputs| parameters(inputs).expect_err("invalid").field().to_owned();
        assert_eq!(
            error(vec![parameter("9lives", ParameterType::String)]),
            "parameters[0].name"
        );
        assert_eq!(
            error(vec![
                parameter("env", ParameterType::String),
                parameter("ENV", ParameterType::String)
            ]),
            "parameters[1].name"
        );
        assert_eq!(
            error(vec![parameter("env", ParameterType::Choice)]),
            "parameters[0].choices"
        );
        let mut bad_default = parameter("count", ParameterType::Number);
        bad_default.default_value = "many".into();
        assert_eq!(error(vec![bad_default]), "parameters[0].default_value");
        let mut not_in_choices = parameter("env", ParameterType::Choice);
        not_in_choices.choices = vec!["dev".into(), "prod".into()];
        not_in_choices.default_value = "qa".into();
        assert_eq!(error(vec![not_in_choices]), "parameters[0].default_value");
    }

    #[test]
    fn run_values_are_resolved_against_the_definition() {
        let mut environment = parameter("ENVIRONMENT", ParameterType::Choice);
        environment.choices = vec!["dev".into(), "prod".into()];
        environment.default_value = "dev".into();
        let mut version = parameter("VERSION", ParameterType::String);
        version.required = true;
        let definitions = parameters(vec![
            environment,
            version,
            parameter("COUNT", ParameterType::Number),
            parameter("DRY_RUN", ParameterType::Boolean),
        ])
        .expect("valid");
        let given = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        let resolved =
            resolve_parameters(&definitions, &given(&[("version", "1.2"), ("COUNT", "3")]))
                .expect("valid");
        assert_eq!(
            resolved,
            given(&[("COUNT", "3"), ("ENVIRONMENT", "dev"), ("VERSION", "1.2")])
        );
        let error = |pairs: &[(&str, &str)]| {
            resolve_parameters(&definitions, &given(pairs))
                .expect_err("invalid")
                .to_string()
        };
        assert_eq!(error(&[]), "parameters[VERSION] is required");
        assert!(
            error(&[("VERSION", "1"), ("COUNT", "three")])
                .starts_with("parameters[COUNT] must be a number")
        );
        assert!(
            error(&[("VERSION", "1"), ("DRY_RUN", "yes")])
                .starts_with("parameters[DRY_RUN] must be true or false")
        );
        assert!(
            error(&[("VERSION", "1"), ("ENVIRONMENT", "qa")])
                .starts_with("parameters[ENVIRONMENT] must be one of [dev, prod]")
        );
        assert_eq!(
            error(&[("VERSION", "1"), ("COLOR", "red")]),
            "parameters[COLOR] is not a parameter of this pipeline"
        );
    }
}

/// A stored pipeline with its execution counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    pub id: super::PipelineId,
    pub customer_id: super::CustomerId,
    pub definition: PipelineDefinition,
    /// The stored version of its steps, which runs point at instead of copying them.
    pub steps_version: StepsVersion,
    pub created_by: super::UserId,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub stats: PipelineStats,
}

/// A stored version of a pipeline's steps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepsVersion {
    /// Its row (internal; runs refer to it).
    pub id: i64,
    /// 1, 2, … per pipeline.
    pub number: i32,
}

/// A pipeline's execution counters (the original dashboard's figures).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PipelineStats {
    pub total: i64,
    pub succeeded: i64,
    /// Failed or timed out.
    pub failed: i64,
    pub last_status: Option<super::execution::ExecutionStatus>,
    pub last_execution_at: Option<chrono::DateTime<chrono::Utc>>,
}
