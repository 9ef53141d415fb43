//! Webhooks: an endpoint that queues a run of a pipeline when a signed delivery arrives. Pure
//! rules: the formats, what an endpoint's filters and parameter sources may be, and whether a
//! delivery passes the filters.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{
    CustomerId, ExecutionId, PipelineId, UserId, ValidationError, WebhookDeliveryId, WebhookId,
};

/// Most events or branch globs one endpoint names.
pub const MAX_FILTERS: usize = 20;
/// Most parameters one endpoint fills.
pub const MAX_PARAMETERS: usize = 50;
/// Longest event name, branch glob or parameter source, characters.
const MAX_FILTER_CHARS: usize = 255;

/// How deliveries are signed and what their bodies look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebhookFormat {
    /// `X-Cygnet-Signature: sha256=<hex>` over `<timestamp>.<body>`, `X-Cygnet-Timestamp`.
    Generic,
    /// GitHub: `X-Hub-Signature-256`, `X-GitHub-Event`, `X-GitHub-Delivery`.
    GitHub,
    /// GitLab: `X-Gitlab-Token`, `X-Gitlab-Event`.
    GitLab,
}

impl WebhookFormat {
    pub const ALL: [WebhookFormat; 3] = [
        WebhookFormat::Generic,
        WebhookFormat::GitHub,
        WebhookFormat::GitLab,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Generic => "generic",
            WebhookFormat::GitHub => "github",
            WebhookFormat::GitLab => "gitlab",
        }
    }

    pub fn from_db(text: &str) -> Option<WebhookFormat> {
        Self::ALL.into_iter().find(|format| format.as_str() == text)
    }

    /// The events a delivery of this format can carry that may queue a run; `None` for the
    /// generic format, whose events are the sender's own names.
    pub fn events(self) -> Option<&'static [&'static str]> {
        match self {
            WebhookFormat::Generic => None,
            WebhookFormat::GitHub => Some(&["push", "pull_request"]),
            WebhookFormat::GitLab => Some(&["push", "tag_push", "merge_request"]),
        }
    }

    /// The events a webhook that names none runs for: pushes only. Pull and merge requests
    /// run code their authors chose, so a webhook runs them only when it names them.
    pub fn default_events(self) -> Option<&'static [&'static str]> {
        match self {
            WebhookFormat::Generic => None,
            WebhookFormat::GitHub => Some(&["push"]),
            WebhookFormat::GitLab => Some(&["push", "tag_push"]),
        }
    }
}

/// Where a run parameter's value comes from in a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParameterSource {
    /// The branch pushed to, or the source branch of a pull or merge request.
    Branch,
    /// The tag pushed.
    Tag,
    /// The commit pushed, or the head of the pull or merge request.
    Commit,
    /// Who pushed or opened the request.
    Author,
    /// The event (`push`, `pull_request`, …).
    Event,
    /// A JSON pointer into the body (RFC 6901), e.g. `/repository/full_name`.
    Pointer(String),
}

impl ParameterSource {
    /// Parses `branch`, `tag`, `commit`, `author`, `event` or a JSON pointer (`/…`); `field`
    /// names the input in the refusal.
    pub fn parse(text: &str, field: &str) -> Result<ParameterSource, ValidationError> {
        let text = text.trim();
        Ok(match text {
            "branch" => ParameterSource::Branch,
            "tag" => ParameterSource::Tag,
            "commit" => ParameterSource::Commit,
            "author" => ParameterSource::Author,
            "event" => ParameterSource::Event,
            pointer if pointer.starts_with('/') && pointer.chars().count() <= MAX_FILTER_CHARS => {
                ParameterSource::Pointer(pointer.to_owned())
            }
            _ => {
                return Err(ValidationError::new(
                    field,
                    "must be branch, tag, commit, author, event or a JSON pointer such as /repository/name",
                ));
            }
        })
    }
}

/// What a delivery says once its signature held: its id at the sender, event, branch, commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryFacts {
    /// The sender's id of the delivery (a repeat carries the same).
    pub key: String,
    pub event: String,
    /// For pull and merge requests, what happened (`opened`, `synchronize`, `update`, …).
    pub action: String,
    /// The branch pushed to, or the source branch of a pull or merge request.
    pub branch: String,
    /// The branch a pull or merge request targets (the branch filters match it); for a push,
    /// the branch pushed to.
    pub target: String,
    /// A pull or merge request from another repository (a fork): never run, since its author
    /// chose the code that would run with the pipeline's secrets.
    pub from_fork: bool,
    /// What identifies the signed content (a digest): a copy of it under another delivery id
    /// is still a copy.
    pub fingerprint: String,
    pub tag: String,
    pub commit: String,
    pub author: String,
}

/// A webhook endpoint as stored (its secret never leaves the store but to check a delivery).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: WebhookId,
    pub customer_id: CustomerId,
    pub pipeline_id: PipelineId,
    /// The random part of its URL: `/hooks/<token>`.
    pub token: String,
    pub format: WebhookFormat,
    pub events: Vec<String>,
    pub branches: Vec<String>,
    /// Parameter name → source, as given (see [`ParameterSource::parse`]).
    pub parameters: BTreeMap<String, String>,
    pub enabled: bool,
    pub last_delivery_at: Option<DateTime<Utc>>,
    pub created_by: UserId,
    pub created_at: DateTime<Utc>,
}

/// The filters and parameter sources of an endpoint, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookRules {
    pub events: Vec<String>,
    pub branches: Vec<String>,
    pub parameters: BTreeMap<String, String>,
}

impl WebhookRules {
    /// Checks events against the format's, branch globs and parameter sources; names the
    /// field of what does not fit.
    pub fn parse(
        format: WebhookFormat,
        events: &[String],
        branches: &[String],
        parameters: &BTreeMap<String, String>,
    ) -> Result<WebhookRules, ValidationError> {
        if events.len() > MAX_FILTERS {
            return Err(ValidationError::new(
                "events",
                format!("may name at most {MAX_FILTERS} events"),
            ));
        }
        let mut checked_events = Vec::with_capacity(events.len());
        for (index, event) in events.iter().enumerate() {
            let field = format!("events[{index}]");
            let event = event.trim();
            match format.events() {
                Some(known) if !known.contains(&event) => {
                    return Err(ValidationError::new(
                        field,
                        format!(
                            "{event:?} is not an event {} webhooks queue runs for (one of: {})",
                            format.as_str(),
                            known.join(", ")
                        ),
                    ));
                }
                _ => {}
            }
            if event.is_empty()
                || event.len() > 100
                || !event
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c))
            {
                return Err(ValidationError::new(
                    field,
                    "must be 1-100 letters, digits, '_', '.', ':' or '-'",
                ));
            }
            checked_events.push(event.to_owned());
        }
        if branches.len() > MAX_FILTERS {
            return Err(ValidationError::new(
                "branches",
                format!("may name at most {MAX_FILTERS} branch patterns"),
            ));
        }
        let mut checked_branches = Vec::with_capacity(branches.len());
        for (index, branch) in branches.iter().enumerate() {
            let field = format!("branches[{index}]");
            let branch = branch.trim();
            if branch.is_empty() || branch.chars().count() > MAX_FILTER_CHARS {
                return Err(ValidationError::new(
                    field,
                    format!("must be 1-{MAX_FILTER_CHARS} characters"),
                ));
            }
            glob::Pattern::new(branch).map_err(|error| {
                ValidationError::new(&field, format!("is not a branch pattern: {error}"))
            })?;
            checked_branches.push(branch.to_owned());
        }
        if parameters.len() > MAX_PARAMETERS {
            return Err(ValidationError::new(
                "parameters",
                format!("may fill at most {MAX_PARAMETERS} parameters"),
            ));
        }
        let mut checked_parameters: BTreeMap<String, String> = BTreeMap::new();
        for (name, source) in parameters {
            let field = format!("parameters[{name}]");
            ParameterSource::parse(source, &field)?;
            if checked_parameters
                .keys()
                .any(|seen| seen.eq_ignore_ascii_case(name.trim()))
            {
                return Err(ValidationError::new(
                    field,
                    "is given twice (names are case-insensitive)",
                ));
            }
            checked_parameters.insert(name.trim().to_owned(), source.trim().to_owned());
        }
        Ok(WebhookRules {
            events: checked_events,
            branches: checked_branches,
            parameters: checked_parameters,
        })
    }

    /// Why a delivery does not queue a run, or `None` when it does.
    pub fn ignores(&self, format: WebhookFormat, facts: &DeliveryFacts) -> Option<String> {
        let wanted = if self.events.is_empty() {
            format
                .default_events()
                .is_none_or(|known| known.contains(&facts.event.as_str()))
        } else {
            self.events.contains(&facts.event)
        };
        if !wanted {
            return Some(format!(
                "event {:?} is not one this webhook runs for",
                facts.event
            ));
        }
        if facts.from_fork {
            return Some(format!(
                "a {} from a fork runs code its author chose: not run",
                facts.event
            ));
        }
        if !pull_request_action_builds(&facts.event, &facts.action) {
            return Some(format!(
                "{} action {:?} changes no code",
                facts.event, facts.action
            ));
        }
        if !self.branches.is_empty() {
            let options = glob::MatchOptions {
                case_sensitive: true,
                require_literal_separator: true,
                require_literal_leading_dot: false,
            };
            let matches = self.branches.iter().any(|pattern| {
                glob::Pattern::new(pattern)
                    .is_ok_and(|pattern| pattern.matches_with(&facts.target, options))
            });
            if facts.target.is_empty() || !matches {
                return Some(format!(
                    "branch {:?} matches none of {}",
                    facts.target,
                    self.branches.join(", ")
                ));
            }
        }
        None
    }
}

/// Pull and merge requests build when opened, reopened or given new commits; closing,
/// labelling or commenting changes no code, nor does deleting a branch.
fn pull_request_action_builds(event: &str, action: &str) -> bool {
    match event {
        "pull_request" => matches!(action, "opened" | "reopened" | "synchronize"),
        "merge_request" => matches!(action, "open" | "reopen" | "update"),
        // A push that deletes its branch or tag.
        _ => action != "deleted",
    }
}

/// A new endpoint, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWebhook {
    pub pipeline_id: PipelineId,
    pub format: WebhookFormat,
    pub rules: WebhookRules,
    pub enabled: bool,
}

/// What became of a delivery, as its log keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryOutcome {
    /// A run was queued.
    Queued,
    /// The signature held but a filter (event, action, branch) left it out.
    Ignored,
    /// The signature held but no run could be queued (a quota, parameters, the pipeline).
    Refused,
    /// The signature, the timestamp or the endpoint's state refused it.
    Rejected,
}

impl DeliveryOutcome {
    pub const ALL: [DeliveryOutcome; 4] = [
        DeliveryOutcome::Queued,
        DeliveryOutcome::Ignored,
        DeliveryOutcome::Refused,
        DeliveryOutcome::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryOutcome::Queued => "queued",
            DeliveryOutcome::Ignored => "ignored",
            DeliveryOutcome::Refused => "refused",
            DeliveryOutcome::Rejected => "rejected",
        }
    }

    pub fn from_db(text: &str) -> Option<DeliveryOutcome> {
        Self::ALL
            .into_iter()
            .find(|outcome| outcome.as_str() == text)
    }
}

/// One row of a webhook's delivery log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDelivery {
    pub id: WebhookDeliveryId,
    pub webhook_id: WebhookId,
    /// The sender's delivery id; empty for rejected deliveries.
    pub delivery_key: String,
    pub event: String,
    pub branch: String,
    pub commit: String,
    pub author: String,
    pub outcome: DeliveryOutcome,
    pub reason: String,
    pub execution_id: Option<ExecutionId>,
    pub received_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(event: &str, action: &str, branch: &str) -> DeliveryFacts {
        DeliveryFacts {
            event: event.into(),
            action: action.into(),
            branch: branch.into(),
            target: branch.into(),
            ..DeliveryFacts::default()
        }
    }

    #[test]
    fn rules_name_the_field_that_does_not_fit() {
        let none = BTreeMap::new();
        let error = WebhookRules::parse(WebhookFormat::GitHub, &["issues".into()], &[], &none)
            .expect_err("refused");
        assert_eq!(error.field(), "events[0]");
        let error = WebhookRules::parse(WebhookFormat::Generic, &[], &["release/[".into()], &none)
            .expect_err("refused");
        assert_eq!(error.field(), "branches[0]");
        let sources = BTreeMap::from([("REPO".to_owned(), "repository.name".to_owned())]);
        let error =
            WebhookRules::parse(WebhookFormat::GitLab, &[], &[], &sources).expect_err("refused");
        assert_eq!(error.field(), "parameters[REPO]");
        assert!(
            WebhookRules::parse(WebhookFormat::Generic, &["deploy:prod".into()], &[], &none)
                .is_ok()
        );
    }

    #[test]
    fn filters_follow_events_actions_and_branch_globs() {
        let rules = WebhookRules::parse(
            WebhookFormat::GitHub,
            &[],
            &["main".into(), "release/*".into()],
            &BTreeMap::new(),
        )
        .expect("valid");
        let github = WebhookFormat::GitHub;
        assert_eq!(rules.ignores(github, &facts("push", "", "main")), None);
        // Pull requests run only when the webhook names them.
        assert!(
            rules
                .ignores(github, &facts("pull_request", "opened", "main"))
                .is_some()
        );
        let rules = WebhookRules::parse(
            WebhookFormat::GitHub,
            &["push".into(), "pull_request".into()],
            &["main".into(), "release/*".into()],
            &BTreeMap::new(),
        )
        .expect("valid");
        let mut fork = facts("pull_request", "opened", "main");
        fork.from_fork = true;
        assert!(rules.ignores(github, &fork).is_some());
        assert_eq!(
            rules.ignores(github, &facts("push", "", "release/2.1")),
            None
        );
        // `*` does not cross a slash.
        assert!(
            rules
                .ignores(github, &facts("push", "", "release/2.1/hotfix"))
                .is_some()
        );
        assert!(
            rules
                .ignores(github, &facts("push", "", "feature/x"))
                .is_some()
        );
        assert_eq!(
            rules.ignores(github, &facts("pull_request", "synchronize", "main")),
            None
        );
        assert!(
            rules
                .ignores(github, &facts("pull_request", "closed", "main"))
                .is_some()
        );
        assert!(
            rules
                .ignores(github, &facts("issues", "", "main"))
                .is_some()
        );
        let only_push =
            WebhookRules::parse(github, &["push".into()], &[], &BTreeMap::new()).expect("valid");
        assert!(
            only_push
                .ignores(github, &facts("pull_request", "opened", "x"))
                .is_some()
        );
        // The generic format queues its sender's events unless the endpoint names some.
        let generic = WebhookRules::default();
        assert_eq!(
            generic.ignores(WebhookFormat::Generic, &facts("anything", "", "")),
            None
        );
    }
}
