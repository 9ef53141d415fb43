//! One customer of the seed, created through the public API: users and memberships, agents,
//! pipelines that ran.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use cygnet_proto::v1 as pb;

use crate::agents::{RunningAgent, start_agent};
use crate::api::{Api, finish, token_for, wait_online};
use crate::seed_data::{Seed, step};

/// One seeded customer: its id, its users' tokens, its pipelines by name, its agents.
pub(crate) struct Seeded {
    pub(crate) customer: pb::Customer,
    pub(crate) tokens: Vec<(String, pb::Role, String)>,
    pub(crate) pipelines: HashMap<&'static str, i64>,
    pub(crate) agents: Vec<RunningAgent>,
}

pub(crate) async fn seed_customer(
    admin: &mut Api,
    server: SocketAddr,
    data_dir: &Path,
    seed: &Seed,
    consultant: i64,
) -> anyhow::Result<Seeded> {
    let customer = admin
        .customers
        .create_customer(pb::CreateCustomerRequest {
            name: seed.name.into(),
            display_name: seed.display_name.into(),
            contact_email: format!("admin@{}", seed.domain),
            ..Default::default()
        })
        .await?
        .into_inner()
        .customer
        .context("customer")?;
    let mut tokens = Vec::new();
    for (username, role) in seed.users {
        let user = admin
            .users
            .create_user(pb::CreateUserRequest {
                username: format!("{username}.{}", seed.name),
                email: format!("{username}@{}", seed.domain),
                full_name: format!("{username} of {}", seed.display_name),
                is_superuser: false,
            })
            .await?
            .into_inner()
            .user
            .context("user")?;
        admin
            .customers
            .add_member(pb::AddMemberRequest {
                customer_id: customer.id,
                user_id: user.id,
                role: (*role).into(),
            })
            .await?;
        let secret = token_for(admin, user.id).await?;
        tokens.push((user.username, *role, secret));
    }
    // The consultant works for every customer: the customer switcher has something to switch.
    admin
        .customers
        .add_member(pb::AddMemberRequest {
            customer_id: customer.id,
            user_id: consultant,
            role: pb::Role::Developer.into(),
        })
        .await?;

    let registration = admin
        .agents
        .create_registration_token(pb::CreateRegistrationTokenRequest {
            customer_id: customer.id,
            description: "demo agents".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .secret;
    let mut agents = Vec::new();
    let mut leaving = Vec::new();
    for (uuid, labels, stays) in seed.agents {
        let agent = start_agent(server, data_dir, customer.id, uuid, labels, &registration)?;
        if *stays {
            agents.push(agent);
        } else {
            leaving.push(agent);
        }
    }
    wait_online(admin, customer.id, seed.agents.len()).await?;
    // The seed's offline agent: registered, seen, gone.
    for agent in leaving {
        agent.stop().await;
    }

    let mut pipelines = HashMap::new();
    for (name, steps, label, runs) in seed.pipelines {
        let pipeline = admin
            .pipelines
            .create_pipeline(pb::CreatePipelineRequest {
                customer_id: customer.id,
                name: (*name).into(),
                description: format!("{} pipeline of {}", name, seed.display_name),
                agent_selector: Some(pb::AgentSelector {
                    agent_id: 0,
                    labels: vec![(*label).into()],
                }),
                steps: steps
                    .iter()
                    .map(|(name, command)| step(name, command))
                    .collect(),
                parameters: vec![
                    pb::Parameter {
                        name: "SERVICE".into(),
                        default_value: name.to_lowercase().replace(' ', "-"),
                        ..Default::default()
                    },
                    pb::Parameter {
                        name: "FAIL".into(),
                        default_value: "no".into(),
                        ..Default::default()
                    },
                ],
                timeout_seconds: 300,
                variable_group_ids: vec![],
            })
            .await?
            .into_inner()
            .pipeline
            .context("pipeline")?;
        for fails in runs.iter() {
            let execution = admin
                .pipelines
                .run_pipeline(pb::RunPipelineRequest {
                    customer_id: customer.id,
                    pipeline_id: pipeline.id,
                    parameters: [(
                        "FAIL".to_owned(),
                        if *fails { "yes" } else { "no" }.to_owned(),
                    )]
                    .into(),
                    agent_id: 0,
                })
                .await?
                .into_inner()
                .execution
                .context("execution")?;
            finish(admin, customer.id, execution.id).await?;
        }
        pipelines.insert(*name, pipeline.id);
    }
    Ok(Seeded {
        customer,
        tokens,
        pipelines,
        agents,
    })
}
