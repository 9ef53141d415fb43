//! What a signed delivery says: its id at the sender, event, branch or tag, commit and author,
//! read from the format's headers and body; and the run parameters an endpoint fills from them.

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::signature::header;
use crate::domain::webhook::{DeliveryFacts, ParameterSource, WebhookFormat};

/// Longest delivery id kept; a longer one is refused (cutting it could make two the same).
const MAX_KEY_CHARS: usize = 200;

/// A string at `pointer` in `body`, or "".
fn text(body: &Value, pointer: &str) -> String {
    body.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// `refs/heads/x` → (branch x, no tag); `refs/tags/v1` → (no branch, tag v1).
fn split_ref(reference: &str) -> (String, String) {
    if let Some(branch) = reference.strip_prefix("refs/heads/") {
        (branch.to_owned(), String::new())
    } else if let Some(tag) = reference.strip_prefix("refs/tags/") {
        (String::new(), tag.to_owned())
    } else {
        (reference.to_owned(), String::new())
    }
}

/// A push that deletes its ref (the new commit is all zeros) builds nothing.
fn deletes(commit: &str) -> bool {
    !commit.is_empty() && commit.bytes().all(|digit| digit == b'0')
}

/// Whether a branch or tag name is one a run takes: letters, digits and `._/+@-` (values of
/// these characters go into commands as they are, so none may mean anything to a shell), no
/// leading `-` (it would read as an option where a step passes it on).
fn ref_name_ok(name: &str) -> bool {
    name.len() <= 255
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/+@-".contains(c))
}

/// What a delivery whose signature held says; `Err` names what is missing or malformed.
/// `signed` is the content the signature covers: its digest is the delivery's fingerprint.
pub fn read(
    format: WebhookFormat,
    headers: &HeaderMap,
    signed: &[&[u8]],
    body: &Value,
) -> Result<DeliveryFacts, String> {
    let mut digest = Sha256::new();
    for part in signed {
        digest.update(part);
    }
    let fingerprint = hex::encode(digest.finalize());
    let mut facts = match format {
        WebhookFormat::GitHub => github(headers, body)?,
        WebhookFormat::GitLab => gitlab(headers, &fingerprint, body),
        WebhookFormat::Generic => generic(headers, &fingerprint, body),
    };
    facts.fingerprint = fingerprint;
    if facts.key.is_empty() || facts.key.chars().count() > MAX_KEY_CHARS {
        return Err(format!(
            "the delivery id must be 1-{MAX_KEY_CHARS} characters"
        ));
    }
    for (what, name) in [
        ("branch", &facts.branch),
        ("target branch", &facts.target),
        ("tag", &facts.tag),
    ] {
        if !ref_name_ok(name) {
            return Err(format!(
                "the {what} {name:?} has characters other than letters, digits and ._/+@- (or starts with -)"
            ));
        }
    }
    if facts.commit.len() > 100
        || facts.commit.starts_with('-')
        || !facts
            .commit
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(format!("the commit {:?} is not a commit id", facts.commit));
    }
    if facts.target.is_empty() {
        facts.target = facts.branch.clone();
    }
    if (facts.event == "push" || facts.event == "tag_push") && deletes(&facts.commit) {
        facts.action = "deleted".to_owned();
    }
    Ok(facts)
}

fn github(headers: &HeaderMap, body: &Value) -> Result<DeliveryFacts, String> {
    let event = header(headers, "x-github-event").ok_or("no X-GitHub-Event header")?;
    let key = header(headers, "x-github-delivery").ok_or("no X-GitHub-Delivery header")?;
    let mut facts = DeliveryFacts {
        key: key.trim().to_owned(),
        event: event.trim().to_owned(),
        action: text(body, "/action"),
        ..DeliveryFacts::default()
    };
    match facts.event.as_str() {
        "push" => {
            (facts.branch, facts.tag) = split_ref(&text(body, "/ref"));
            facts.commit = text(body, "/after");
            facts.author = text(body, "/pusher/name");
        }
        "pull_request" => {
            facts.branch = text(body, "/pull_request/head/ref");
            facts.target = text(body, "/pull_request/base/ref");
            facts.commit = text(body, "/pull_request/head/sha");
            facts.author = text(body, "/pull_request/user/login");
            let head = body.pointer("/pull_request/head/repo/id");
            let base = body.pointer("/pull_request/base/repo/id");
            // A head repository that is not the base one (or is gone) is a fork's.
            facts.from_fork = head.is_none_or(Value::is_null) || head != base;
        }
        _ => {}
    }
    if facts.author.is_empty() {
        facts.author = text(body, "/sender/login");
    }
    Ok(facts)
}

fn gitlab(headers: &HeaderMap, fingerprint: &str, body: &Value) -> DeliveryFacts {
    let event = match header(headers, "x-gitlab-event").unwrap_or_default().trim() {
        "Push Hook" => "push".to_owned(),
        "Tag Push Hook" => "tag_push".to_owned(),
        "Merge Request Hook" => "merge_request".to_owned(),
        // Other hooks keep their kind from the body ("note", "pipeline", …).
        _ => text(body, "/object_kind"),
    };
    // GitLab sends the same Idempotency-Key (and X-Gitlab-Event-UUID) again when it retries;
    // without either, the same body is the same delivery.
    let key = header(headers, "idempotency-key")
        .or_else(|| header(headers, "x-gitlab-event-uuid"))
        .map_or_else(|| fingerprint.to_owned(), |key| key.trim().to_owned());
    let mut facts = DeliveryFacts {
        key,
        event,
        ..DeliveryFacts::default()
    };
    match facts.event.as_str() {
        "push" | "tag_push" => {
            (facts.branch, facts.tag) = split_ref(&text(body, "/ref"));
            facts.commit = text(body, "/checkout_sha");
            if facts.commit.is_empty() {
                facts.commit = text(body, "/after");
            }
            facts.author = text(body, "/user_username");
        }
        "merge_request" => {
            facts.action = text(body, "/object_attributes/action");
            // An update without `oldrev` changed the title, labels or the like, not the code.
            if facts.action == "update" && text(body, "/object_attributes/oldrev").is_empty() {
                facts.action = "edited".to_owned();
            }
            facts.branch = text(body, "/object_attributes/source_branch");
            facts.target = text(body, "/object_attributes/target_branch");
            let source = body.pointer("/object_attributes/source_project_id");
            let target = body.pointer("/object_attributes/target_project_id");
            facts.from_fork = source.is_none_or(Value::is_null) || source != target;
            facts.commit = text(body, "/object_attributes/last_commit/id");
            facts.author = text(body, "/user/username");
        }
        _ => {}
    }
    facts
}

fn generic(headers: &HeaderMap, fingerprint: &str, body: &Value) -> DeliveryFacts {
    let event = header(headers, "x-cygnet-event")
        .map(|event| event.trim().to_owned())
        .filter(|event| !event.is_empty())
        .unwrap_or_else(|| match text(body, "/event") {
            event if event.is_empty() => "push".to_owned(),
            event => event,
        });
    // Without a delivery id, what the signature covers (the timestamp and the body) names it:
    // the same signed delivery sent twice is one.
    let key = header(headers, "x-cygnet-delivery")
        .map_or_else(|| fingerprint.to_owned(), |key| key.trim().to_owned());
    let mut facts = DeliveryFacts {
        key,
        event,
        action: text(body, "/action"),
        branch: text(body, "/branch"),
        tag: text(body, "/tag"),
        commit: text(body, "/commit"),
        author: text(body, "/author"),
        ..DeliveryFacts::default()
    };
    if facts.branch.is_empty() && facts.tag.is_empty() {
        (facts.branch, facts.tag) = split_ref(&text(body, "/ref"));
    }
    facts
}

/// The run parameters an endpoint fills from a delivery (`sources`: name → source). A source
/// with nothing in this delivery leaves its parameter to the pipeline's default; a pointer at
/// an object or a list is refused, naming the parameter.
pub fn parameters(
    sources: &BTreeMap<String, String>,
    facts: &DeliveryFacts,
    body: &Value,
) -> Result<BTreeMap<String, String>, String> {
    let mut values = BTreeMap::new();
    for (name, source) in sources {
        let field = format!("parameters[{name}]");
        let value = match ParameterSource::parse(source, &field)
            .map_err(|error| error.to_string())?
        {
            ParameterSource::Branch => facts.branch.clone(),
            ParameterSource::Tag => facts.tag.clone(),
            ParameterSource::Commit => facts.commit.clone(),
            ParameterSource::Author => facts.author.clone(),
            ParameterSource::Event => facts.event.clone(),
            ParameterSource::Pointer(pointer) => match body.pointer(&pointer) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(text)) => text.clone(),
                Some(Value::Bool(flag)) => flag.to_string(),
                Some(Value::Number(number)) => number.to_string(),
                Some(Value::Array(_) | Value::Object(_)) => {
                    return Err(format!(
                        "{field}: {pointer} is an object or a list in this delivery, not a value"
                    ));
                }
            },
        };
        if !value.is_empty() {
            values.insert(name.clone(), value);
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use serde_json::json;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("valid"));
        }
        map
    }

    #[test]
    fn github_push_and_pull_request() {
        let push = json!({"ref": "refs/heads/main", "after": "abc123", "pusher": {"name": "octo"}});
        let injected = json!({"ref": "refs/heads/-x", "after": "abc123"});
        let github = headers(&[("x-github-event", "push"), ("x-github-delivery", "d-1")]);
        let facts = read(WebhookFormat::GitHub, &github, &[b""], &push).expect("valid");
        assert_eq!((facts.key.as_str(), facts.event.as_str()), ("d-1", "push"));
        assert_eq!(
            (facts.branch.as_str(), facts.commit.as_str()),
            ("main", "abc123")
        );
        assert_eq!(facts.author, "octo");
        let pull = json!({"action": "opened", "pull_request": {
            "head": {"ref": "fix", "sha": "f00", "repo": {"id": 1}},
            "base": {"ref": "main", "repo": {"id": 1}}, "user": {"login": "mona"}}});
        let github = headers(&[
            ("x-github-event", "pull_request"),
            ("x-github-delivery", "d-2"),
        ]);
        let facts = read(WebhookFormat::GitHub, &github, &[b""], &pull).expect("valid");
        assert_eq!(
            (facts.branch.as_str(), facts.commit.as_str()),
            ("fix", "f00")
        );
        assert_eq!(
            (facts.action.as_str(), facts.author.as_str()),
            ("opened", "mona")
        );
        assert!(read(WebhookFormat::GitHub, &HeaderMap::new(), &[b""], &push).is_err());
        let github = headers(&[("x-github-event", "push"), ("x-github-delivery", "d-3")]);
        assert!(read(WebhookFormat::GitHub, &github, &[b""], &injected).is_err());
    }

    #[test]
    fn gitlab_push_tag_and_merge_request() {
        let push = json!({"object_kind": "push", "ref": "refs/heads/dev", "checkout_sha": "c1",
            "user_username": "jsmith"});
        let gitlab = headers(&[("x-gitlab-event", "Push Hook"), ("idempotency-key", "k-1")]);
        let facts = read(WebhookFormat::GitLab, &gitlab, &[b"raw"], &push).expect("valid");
        assert_eq!((facts.key.as_str(), facts.branch.as_str()), ("k-1", "dev"));
        assert_eq!(
            (facts.commit.as_str(), facts.author.as_str()),
            ("c1", "jsmith")
        );
        let tag = json!({"ref": "refs/tags/v1.0", "checkout_sha": "c2"});
        let gitlab = headers(&[("x-gitlab-event", "Tag Push Hook")]);
        let facts = read(WebhookFormat::GitLab, &gitlab, &[b"raw"], &tag).expect("valid");
        assert_eq!(
            (facts.event.as_str(), facts.tag.as_str()),
            ("tag_push", "v1.0")
        );
        // No id header: the body's digest is the id.
        assert_eq!(facts.key.len(), 64);
        let merge = json!({"user": {"username": "ann"}, "object_attributes": {"action": "update",
            "oldrev": "aa", "source_branch": "feature", "target_branch": "main",
            "source_project_id": 3, "target_project_id": 3, "last_commit": {"id": "b1"}}});
        let gitlab = headers(&[("x-gitlab-event", "Merge Request Hook")]);
        let facts = read(WebhookFormat::GitLab, &gitlab, &[b"m"], &merge).expect("valid");
        assert_eq!(
            (facts.event.as_str(), facts.action.as_str()),
            ("merge_request", "update")
        );
        assert_eq!(
            (facts.branch.as_str(), facts.commit.as_str()),
            ("feature", "b1")
        );
        assert_eq!((facts.target.as_str(), facts.from_fork), ("main", false));
        // An update that changed no code (no oldrev) is an edit; another project's is a fork's.
        let edit = json!({"object_attributes": {"action": "update", "source_branch": "feature",
            "source_project_id": 4, "target_project_id": 3}});
        let facts = read(WebhookFormat::GitLab, &gitlab, &[b"e"], &edit).expect("valid");
        assert_eq!((facts.action.as_str(), facts.from_fork), ("edited", true));
    }

    #[test]
    fn a_deleted_branch_is_a_deletion() {
        let push =
            json!({"ref": "refs/heads/old", "after": "0000000000000000000000000000000000000000"});
        let github = headers(&[("x-github-event", "push"), ("x-github-delivery", "d")]);
        let facts = read(WebhookFormat::GitHub, &github, &[b""], &push).expect("valid");
        assert_eq!(facts.action, "deleted");
    }

    #[test]
    fn parameters_come_from_facts_and_pointers() {
        let body = json!({"repository": {"full_name": "acme/api", "id": 7, "owner": {}}});
        let facts = DeliveryFacts {
            branch: "main".into(),
            commit: "abc".into(),
            ..DeliveryFacts::default()
        };
        let sources = BTreeMap::from([
            ("BRANCH".to_owned(), "branch".to_owned()),
            ("REPO".to_owned(), "/repository/full_name".to_owned()),
            ("REPO_ID".to_owned(), "/repository/id".to_owned()),
            ("TAG".to_owned(), "tag".to_owned()),
        ]);
        let values = parameters(&sources, &facts, &body).expect("valid");
        assert_eq!(values.get("BRANCH").map(String::as_str), Some("main"));
        assert_eq!(values.get("REPO").map(String::as_str), Some("acme/api"));
        assert_eq!(values.get("REPO_ID").map(String::as_str), Some("7"));
        assert!(!values.contains_key("TAG"));
        let object = BTreeMap::from([("OWNER".to_owned(), "/repository/owner".to_owned())]);
        assert!(
            parameters(&object, &facts, &body)
                .expect_err("refused")
                .contains("parameters[OWNER]")
        );
    }
}
