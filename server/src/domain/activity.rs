//! The activity feed: what happened in a customer, for the dashboard.

use chrono::{DateTime, Utc};

use super::{CustomerId, UserId};

/// A stored activity event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityEvent {
    pub id: i64,
    pub customer_id: CustomerId,
    pub kind: String,
    pub subject_type: String,
    pub subject_id: i64,
    pub message: String,
    pub actor: Option<UserId>,
    pub created_at: DateTime<Utc>,
}

/// An event to record; the customer comes from the scope or record it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewActivity {
    /// Dotted kind, e.g. `agent.online`.
    pub kind: &'static str,
    pub subject_type: &'static str,
    pub subject_id: i64,
    pub message: String,
    pub actor: Option<UserId>,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    /// Dotted literals of the subjects events are about, e.g. `"agent.online"`.
    fn kinds_in(text: &str) -> BTreeSet<String> {
        const SUBJECTS: [&str; 6] = [
            "agent",
            "execution",
            "release",
            "monitor",
            "member",
            "quota",
        ];
        text.split('"')
            .skip(1)
            .step_by(2)
            .filter(|literal| {
                literal.split_once('.').is_some_and(|(subject, what)| {
                    SUBJECTS.contains(&subject)
                        && !what.is_empty()
                        && what.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                })
            })
            .map(str::to_owned)
            .collect()
    }

    fn sources(dir: &Path, into: &mut String) {
        for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                sources(&path, into);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                into.push_str(&std::fs::read_to_string(&path).expect("read"));
            }
        }
    }

    /// Every kind the server records is listed in `ActivityEvent.kind`'s documentation, and
    /// every kind listed there is recorded somewhere.
    #[test]
    fn the_proto_lists_every_activity_kind() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut code = String::new();
        sources(&root.join("src/store"), &mut code);
        let emitted = kinds_in(&code);
        let proto = std::fs::read_to_string(root.join("../proto/cygnet/v1/customer_service.proto"))
            .expect("proto");
        let comment = proto
            .split("message ActivityEvent")
            .nth(1)
            .and_then(|rest| rest.split("string kind = 3;").next())
            .expect("the kind field's comment");
        let documented: BTreeSet<String> = comment
            .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
            .filter(|word| word.contains('.') && !word.ends_with('.'))
            .map(|word| {
                word.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '_' && c != '.')
            })
            .map(str::to_owned)
            .collect();
        assert!(emitted.len() >= 20, "{emitted:?}");
        assert_eq!(
            emitted, documented,
            "emitted (left) and documented (right) kinds differ"
        );
    }
}
