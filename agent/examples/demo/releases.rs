//! The seed's releases, deployed through their environments.

use std::collections::HashMap;

use anyhow::Context;
use cygnet_proto::v1 as pb;

use crate::api::{Api, release_until};
use crate::seed::Seeded;

/// Acme's two releases: v2.0 through all four environments (waiting for a Staging approval),
/// and a v1.5 hotfix through QA to Production, deployed by the platform admin and approved by
/// ops (nobody approves their own production deploy).
pub(crate) async fn seed_acme_releases(
    admin: &mut Api,
    ops: &mut Api,
    acme: &Seeded,
) -> anyhow::Result<()> {
    let customer_id = acme.customer.id;
    let environments: HashMap<String, i64> = admin
        .releases
        .list_environments(pb::ListEnvironmentsRequest {
            customer_id,
            ..Default::default()
        })
        .await?
        .into_inner()
        .environments
        .into_iter()
        .map(|environment| (environment.name, environment.id))
        .collect();
    let api = acme.pipelines["Build API Service"];
    let web = acme.pipelines["Build Web Frontend"];
    let stage = |order: i32, environment: &str| pb::ReleaseStage {
        order,
        environment_id: environments[environment],
        pipeline_id: api,
        ..Default::default()
    };
    let mut created = Vec::new();
    for (name, stages) in [
        (
            "v2.0 Release Pipeline",
            vec![
                stage(1, "Development"),
                stage(2, "QA"),
                stage(3, "Staging"),
                stage(4, "Production"),
            ],
        ),
        ("v1.5 Hotfix", vec![stage(1, "QA"), stage(2, "Production")]),
    ] {
        let release = admin
            .releases
            .create_release(pb::CreateReleaseRequest {
                customer_id,
                name: name.into(),
                description: format!("{name} of the API and web frontend"),
                pipeline_ids: vec![api, web],
                stages,
            })
            .await?
            .into_inner()
            .release
            .context("release")?;
        created.push(release.id);
    }
    let mut deployed = Vec::new();
    for (release_id, version) in created.iter().zip(["2.0.0", "1.5.1"]) {
        let execution = admin
            .releases
            .deploy_release(pb::DeployReleaseRequest {
                customer_id,
                release_id: *release_id,
                version: version.into(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .release_execution
            .context("release execution")?;
        deployed.push(execution.id);
    }
    let awaiting = |execution: &pb::ReleaseExecution| {
        execution
            .stages
            .iter()
            .any(|stage| stage.status == pb::StageStatus::AwaitingApproval as i32)
    };
    release_until(admin, customer_id, deployed[0], awaiting).await?;
    let hotfix = release_until(admin, customer_id, deployed[1], awaiting).await?;
    let waiting = hotfix
        .stages
        .iter()
        .find(|stage| stage.status == pb::StageStatus::AwaitingApproval as i32)
        .context("a stage awaiting approval")?;
    ops.releases
        .approve_stage(pb::ApproveStageRequest {
            customer_id,
            stage_execution_id: waiting.id,
            comment: "hotfix verified in QA".into(),
            ..Default::default()
        })
        .await?;
    release_until(admin, customer_id, deployed[1], |execution| {
        execution.status == pb::ReleaseExecutionStatus::Succeeded as i32
    })
    .await?;
    Ok(())
}

/// A release of one pipeline through one environment without approval, deployed once.
pub(crate) async fn seed_single_stage_release(
    admin: &mut Api,
    seeded: &Seeded,
    name: &str,
    pipeline: &str,
    environment: &str,
) -> anyhow::Result<()> {
    let customer_id = seeded.customer.id;
    let environment_id = admin
        .releases
        .list_environments(pb::ListEnvironmentsRequest {
            customer_id,
            ..Default::default()
        })
        .await?
        .into_inner()
        .environments
        .into_iter()
        .find(|candidate| candidate.name == environment)
        .context("environment")?
        .id;
    let pipeline_id = seeded.pipelines[pipeline];
    let release = admin
        .releases
        .create_release(pb::CreateReleaseRequest {
            customer_id,
            name: name.into(),
            description: format!("{name} through {environment}"),
            pipeline_ids: vec![pipeline_id],
            stages: vec![pb::ReleaseStage {
                order: 1,
                environment_id,
                pipeline_id,
                ..Default::default()
            }],
        })
        .await?
        .into_inner()
        .release
        .context("release")?;
    let execution = admin
        .releases
        .deploy_release(pb::DeployReleaseRequest {
            customer_id,
            release_id: release.id,
            version: "3.0.0".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .release_execution
        .context("release execution")?;
    release_until(admin, customer_id, execution.id, |execution| {
        execution.finished_at.is_some()
    })
    .await?;
    Ok(())
}
