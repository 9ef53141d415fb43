//! What a release stage deploys, fixed when its release execution starts, and the digest an
//! approval binds. A stage runs its snapshot, not the deploy pipeline as it is when the stage
//! starts: rewriting the pipeline while a stage awaits approval changes nothing that runs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::pipeline::{AgentSelector, StepDefinition};
use super::{AgentId, EnvironmentId, PipelineId, VariableGroupId};

/// What a stage runs besides its parameters (stored with the stage as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageSnapshot {
    /// The id of the deploy pipeline's steps version.
    pub version_id: i64,
    /// Its number, as the pipeline shows it.
    pub version_number: i32,
    pub variable_group_ids: Vec<i64>,
    pub timeout_seconds: i32,
    pub selector_agent_id: Option<i64>,
    pub selector_labels: Vec<String>,
}

impl StageSnapshot {
    pub fn variable_groups(&self) -> Vec<VariableGroupId> {
        self.variable_group_ids
            .iter()
            .copied()
            .map(VariableGroupId::from_db)
            .collect()
    }

    pub fn selector(&self) -> AgentSelector {
        AgentSelector {
            agent_id: self.selector_agent_id.map(AgentId::from_db),
            labels: self.selector_labels.clone(),
        }
    }
}

/// Everything a stage's digest covers.
pub struct DigestInput<'a> {
    pub pipeline_id: PipelineId,
    pub environment_id: EnvironmentId,
    pub snapshot: &'a StageSnapshot,
    pub steps: &'a [StepDefinition],
    pub parameters: &'a BTreeMap<String, String>,
    /// (path, sha256) of every shipped artifact.
    pub artifacts: &'a [(String, String)],
}

/// `sha256:<hex>` over a canonical JSON document of `input` (objects with sorted keys, lists
/// in their order; artifacts sorted), so the same snapshot always has the same digest.
pub fn digest(input: &DigestInput<'_>) -> String {
    let mut artifacts = input.artifacts.to_vec();
    artifacts.sort();
    // serde_json's maps are ordered (BTreeMap): the document is canonical.
    let document = serde_json::json!({
        "pipeline_id": input.pipeline_id.get(),
        "environment_id": input.environment_id.get(),
        "snapshot": input.snapshot,
        "steps": input.steps,
        "parameters": input.parameters,
        "artifacts": artifacts,
    });
    let hash = Sha256::digest(document.to_string().as_bytes());
    format!("sha256:{}", hex::encode(hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> StageSnapshot {
        StageSnapshot {
            version_id: 7,
            version_number: 2,
            variable_group_ids: vec![3],
            timeout_seconds: 600,
            selector_agent_id: None,
            selector_labels: vec!["linux".into()],
        }
    }

    fn step(command: &str) -> StepDefinition {
        serde_json::from_value(
            serde_json::json!({"name": "deploy", "command": command, "shell": "sh"}),
        )
        .expect("step")
    }

    fn digest_of(
        snapshot: &StageSnapshot,
        command: &str,
        artifacts: &[(String, String)],
    ) -> String {
        let parameters = BTreeMap::from([("target".to_owned(), "eu".to_owned())]);
        digest(&DigestInput {
            pipeline_id: PipelineId::from_db(1),
            environment_id: EnvironmentId::from_db(4),
            snapshot,
            steps: &[step(command)],
            parameters: &parameters,
            artifacts,
        })
    }

    #[test]
    fn the_digest_changes_with_anything_that_runs_and_not_with_artifact_order() {
        let artifacts = vec![
            ("a.tar".to_owned(), "11".to_owned()),
            ("b.tar".to_owned(), "22".to_owned()),
        ];
        let reversed: Vec<_> = artifacts.iter().rev().cloned().collect();
        let base = digest_of(&snapshot(), "./deploy.sh", &artifacts);
        assert!(base.starts_with("sha256:") && base.len() == 7 + 64);
        assert_eq!(base, digest_of(&snapshot(), "./deploy.sh", &reversed));
        assert_ne!(
            base,
            digest_of(&snapshot(), "./deploy.sh; cat $SECRET", &artifacts)
        );
        assert_ne!(base, digest_of(&snapshot(), "./deploy.sh", &artifacts[..1]));
        let other_groups = StageSnapshot {
            variable_group_ids: vec![3, 9],
            ..snapshot()
        };
        assert_ne!(base, digest_of(&other_groups, "./deploy.sh", &artifacts));
    }
}
