//! Authority inside a customer, tried as a malicious developer would: secrets reach only code
//! that a role allowed to manage them accepted, and an approval binds exactly what runs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cygnet_proto::v1 as pb;
use tonic::Code;

use crate::common::{Backend, TestServer, TestUser, assert_status, eventually, step};

/// A customer with a developer, a devops engineer and an admin, and an agent that records
/// every job it is given and finishes it at once.
struct Team {
    customer_id: i64,
    developer: TestUser,
    ops: TestUser,
    admin: TestUser,
    jobs: Arc<Mutex<Vec<pb::JobAssignment>>>,
    _agent: tokio::task::JoinHandle<()>,
}

async fn team(server: &TestServer, name: &str) -> Team {
    let customer_id = server.create_customer(name).await.id;
    let member = |username: String, role| async move {
        let user = server.create_user(&username).await;
        server.add_member(customer_id, user.id, role).await;
        user
    };
    let developer = member(format!("{name}-dev"), pb::Role::Developer).await;
    let ops = member(format!("{name}-ops"), pb::Role::Devops).await;
    let admin = member(format!("{name}-admin"), pb::Role::Admin).await;
    let token = server.create_registration_token(customer_id).await;
    let uuid = format!("{name}-agent");
    let registered = server
        .register_agent(customer_id, &uuid, &token)
        .await
        .expect("register");
    let agent = server
        .connect_agent(&uuid, &registered.credential)
        .await
        .expect("connect");
    let jobs = Arc::new(Mutex::new(Vec::new()));
    let record = jobs.clone();
    let pb_agent = agent;
    let sender = pb_agent.sender.clone();
    let mut inbound = pb_agent.inbound;
    let task = tokio::spawn(async move {
        while let Ok(Some(message)) = inbound.message().await {
            let Some(pb::connect_response::Command::AssignJob(job)) = message.command else {
                continue;
            };
            let execution_id = job.execution_id;
            record.lock().expect("jobs").push(job);
            let events = [
                pb::job_event::Event::Started(pb::JobStarted {
                    workspace: "/tmp/recorded".into(),
                }),
                pb::job_event::Event::Finished(pb::JobFinished {
                    status: pb::ExecutionStatus::Succeeded.into(),
                    reason: String::new(),
                }),
            ];
            for (index, event) in events.into_iter().enumerate() {
                let message = pb::ConnectRequest {
                    message: Some(pb::connect_request::Message::JobEvent(pb::JobEvent {
                        execution_id,
                        sequence: index as i64 + 1,
                        occurred_at: None,
                        event: Some(event),
                    })),
                };
                if sender.send(message).await.is_err() {
                    return;
                }
            }
        }
    });
    Team {
        customer_id,
        developer,
        ops,
        admin,
        jobs,
        _agent: task,
    }
}

impl Team {
    fn job(&self, execution_id: i64) -> Option<pb::JobAssignment> {
        self.jobs
            .lock()
            .expect("jobs")
            .iter()
            .find(|job| job.execution_id == execution_id)
            .cloned()
    }

    /// A variable group holding one secret (for every environment, or for one).
    async fn secret_group(
        &self,
        server: &TestServer,
        name: &str,
        key: &str,
        environment_id: i64,
    ) -> i64 {
        let group = server
            .variables(&self.ops.token)
            .create_variable_group(pb::CreateVariableGroupRequest {
                customer_id: self.customer_id,
                name: name.into(),
                description: String::new(),
                variables: vec![],
            })
            .await
            .expect("create group")
            .into_inner()
            .group
            .expect("group")
            .id;
        server
            .variables(&self.ops.token)
            .set_variable(pb::SetVariableRequest {
                customer_id: self.customer_id,
                group_id: group,
                key: key.into(),
                value: "hunter2".into(),
                is_secret: true,
                environment_id,
                ..Default::default()
            })
            .await
            .expect("set secret");
        group
    }
}

fn update_steps(customer_id: i64, pipeline_id: i64, command: &str) -> pb::UpdatePipelineRequest {
    pb::UpdatePipelineRequest {
        customer_id,
        pipeline_id,
        steps: vec![step("deploy", command)],
        set_steps: true,
        ..Default::default()
    }
}

/// A developer may neither attach a group holding secrets to a pipeline nor rewrite the steps
/// of a pipeline that gets secrets; a role that may manage secrets may do both.
async fn only_secret_managers_hand_secrets_to_code(backend: Backend) {
    let server = TestServer::start(backend).await;
    let team = team(&server, "keys").await;
    let customer_id = team.customer_id;
    let group = team.secret_group(&server, "prod-keys", "API_KEY", 0).await;
    let plain = server
        .variables(&team.ops.token)
        .create_variable_group(pb::CreateVariableGroupRequest {
            customer_id,
            name: "plain".into(),
            description: String::new(),
            variables: vec![],
        })
        .await
        .expect("plain group")
        .into_inner()
        .group
        .expect("group")
        .id;
    let mut developer = server.pipelines(&team.developer.token);
    // The attack: a pipeline of the developer's that echoes the secret back, reversed.
    let steal = vec![step("steal", "echo $API_KEY | rev")];
    assert_status(
        developer
            .create_pipeline(pb::CreatePipelineRequest {
                customer_id,
                name: "innocent".into(),
                steps: steal.clone(),
                variable_group_ids: vec![group],
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        &format!("attach variable group {group} to pipeline \"innocent\": the group holds secrets"),
    );
    let own = developer
        .create_pipeline(pb::CreatePipelineRequest {
            customer_id,
            name: "own".into(),
            steps: steal.clone(),
            variable_group_ids: vec![plain],
            ..Default::default()
        })
        .await
        .expect("a group without secrets may be attached")
        .into_inner()
        .pipeline
        .expect("pipeline");
    assert_status(
        developer
            .update_pipeline(pb::UpdatePipelineRequest {
                customer_id,
                pipeline_id: own.id,
                variable_group_ids: vec![plain, group],
                set_variable_group_ids: true,
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        &format!("attach variable group {group} to pipeline {}", own.id),
    );
    // A pipeline that gets secrets, set up by devops; the developer may not rewrite its steps.
    let deploy = server
        .pipelines(&team.ops.token)
        .create_pipeline(pb::CreatePipelineRequest {
            customer_id,
            name: "deploy".into(),
            steps: vec![step("deploy", "./deploy.sh")],
            variable_group_ids: vec![group],
            ..Default::default()
        })
        .await
        .expect("devops attaches secrets")
        .into_inner()
        .pipeline
        .expect("pipeline");
    assert_status(
        developer
            .update_pipeline(update_steps(customer_id, deploy.id, "echo $API_KEY | rev"))
            .await,
        Code::PermissionDenied,
        &format!(
            "change the steps or parameters of pipeline {}: its variable group {group} holds secrets",
            deploy.id
        ),
    );
    // Parameters reach the commands too: their definitions are a secret manager's as well.
    assert_status(
        developer
            .update_pipeline(pb::UpdatePipelineRequest {
                customer_id,
                pipeline_id: deploy.id,
                parameters: vec![pb::Parameter {
                    name: "HOOK".into(),
                    default_value: "$(echo $API_KEY | rev)".into(),
                    ..Default::default()
                }],
                set_parameters: true,
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "change the steps or parameters of",
    );
    // So are the plain variables such code runs with (PATH, BASH_ENV, …), in the secret's
    // group and in any other group of a pipeline that gets secrets.
    let mut dev_variables = server.variables(&team.developer.token);
    for target in [group, plain] {
        let plain_variable = pb::SetVariableRequest {
            customer_id,
            group_id: target,
            key: "BASH_ENV".into(),
            value: "/tmp/steal.sh".into(),
            ..Default::default()
        };
        if target == plain {
            // `plain` is not yet used by a pipeline that gets secrets: a developer's to set.
            dev_variables
                .set_variable(plain_variable.clone())
                .await
                .expect("a plain group of the developer's own pipeline");
            continue;
        }
        assert_status(
            dev_variables.set_variable(plain_variable).await,
            Code::PermissionDenied,
            &format!("may not change variables of variable group {group}"),
        );
    }
    // Nothing was half-written: the steps are devops's.
    let current = developer
        .get_pipeline(pb::GetPipelineRequest {
            customer_id,
            pipeline_id: deploy.id,
        })
        .await
        .expect("get")
        .into_inner()
        .pipeline
        .expect("pipeline");
    assert_eq!(current.steps[0].command, "./deploy.sh");
    assert_eq!(current.steps_version, deploy.steps_version);
    // What does not touch the code stays the developer's; so do pipelines without secrets.
    developer
        .update_pipeline(pb::UpdatePipelineRequest {
            customer_id,
            pipeline_id: deploy.id,
            description: Some("deploys the shop".into()),
            ..Default::default()
        })
        .await
        .expect("describe");
    developer
        .update_pipeline(update_steps(customer_id, own.id, "make"))
        .await
        .expect("steps of a pipeline without secrets");
    // A group that gains a secret later makes the pipeline's steps a secret manager's too.
    server
        .variables(&team.ops.token)
        .set_variable(pb::SetVariableRequest {
            customer_id,
            group_id: plain,
            key: "TOKEN".into(),
            value: "s3cret".into(),
            is_secret: true,
            environment_id: 0,
            ..Default::default()
        })
        .await
        .expect("secret in the plain group");
    assert_status(
        developer
            .update_pipeline(update_steps(customer_id, own.id, "echo $TOKEN | rev"))
            .await,
        Code::PermissionDenied,
        &format!("its variable group {plain} holds secrets"),
    );
    server
        .pipelines(&team.ops.token)
        .update_pipeline(update_steps(customer_id, deploy.id, "./deploy.sh --fast"))
        .await
        .expect("devops changes the steps");
}

async fn create_environment(
    server: &TestServer,
    customer_id: i64,
    name: &str,
    allow_self_approval: bool,
) -> pb::Environment {
    server
        .admin_releases()
        .create_environment(pb::CreateEnvironmentRequest {
            customer_id,
            name: name.into(),
            order: 10,
            requires_approval: true,
            approver_roles: vec![pb::Role::Admin.into(), pb::Role::Devops.into()],
            allow_self_approval,
            ..Default::default()
        })
        .await
        .expect("create environment")
        .into_inner()
        .environment
        .expect("environment")
}

async fn stage_of(server: &TestServer, customer_id: i64, id: i64) -> pb::StageExecution {
    server
        .release_execution(customer_id, id)
        .await
        .stages
        .into_iter()
        .next()
        .expect("stage")
}

async fn wait_for_stage(
    server: &TestServer,
    customer_id: i64,
    id: i64,
    status: pb::StageStatus,
) -> pb::StageExecution {
    eventually(
        &format!("stage {status:?}"),
        Duration::from_secs(10),
        || async { stage_of(server, customer_id, id).await.status() == status },
    )
    .await;
    stage_of(server, customer_id, id).await
}

/// The deployer rewrites the deploy pipeline while its stage awaits approval: what was
/// approved runs, with the environment's secrets; the rewrite never sees them. The one who
/// deployed may not approve an approval-gated environment, whatever its name, unless the
/// environment allows it; an approval naming another digest is refused.
async fn an_approval_binds_the_snapshot_that_runs(backend: Backend) {
    let server = TestServer::start(backend).await;
    let team = team(&server, "ship").await;
    let customer_id = team.customer_id;
    let live = create_environment(&server, customer_id, "prod-eu", false).await;
    let group = team
        .secret_group(&server, "eu-keys", "DEPLOY_KEY", live.id)
        .await;
    let deploy = server
        .pipelines(&team.ops.token)
        .create_pipeline(pb::CreatePipelineRequest {
            customer_id,
            name: "deploy".into(),
            steps: vec![step("deploy", "./deploy.sh")],
            variable_group_ids: vec![group],
            parameters: vec![pb::Parameter {
                name: "TARGET".into(),
                default_value: "eu".into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .expect("deploy pipeline")
        .into_inner()
        .pipeline
        .expect("pipeline");
    let release = server
        .releases(&team.ops.token)
        .create_release(pb::CreateReleaseRequest {
            customer_id,
            name: "shop".into(),
            stages: vec![pb::ReleaseStage {
                order: 1,
                environment_id: live.id,
                pipeline_id: deploy.id,
                // A stage cannot take its environment's approval away.
                requires_approval: Some(false),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .expect("release")
        .into_inner()
        .release
        .expect("release");
    let deploy_request = |parameters: Vec<(&str, &str)>| pb::DeployReleaseRequest {
        customer_id,
        release_id: release.id,
        version: "1.0".into(),
        parameters: parameters
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect(),
        ..Default::default()
    };
    let mut developer = server.releases(&team.developer.token);
    // A deployer's parameter never stands in for a secret.
    let refused = developer
        .deploy_release(deploy_request(vec![("DEPLOY_KEY", "mine")]))
        .await;
    assert_status(refused, Code::InvalidArgument, "parameters[DEPLOY_KEY]");
    let deployed = developer
        .deploy_release(deploy_request(vec![]))
        .await
        .expect("deploy")
        .into_inner()
        .release_execution
        .expect("release execution");
    let waiting = wait_for_stage(
        &server,
        customer_id,
        deployed.id,
        pb::StageStatus::AwaitingApproval,
    )
    .await;
    assert!(waiting.requires_approval);
    assert!(
        waiting.snapshot_digest.starts_with("sha256:"),
        "{waiting:?}"
    );
    assert_eq!(waiting.pipeline_version, deploy.steps_version);
    // The rewrite, by someone allowed to change the steps: it does not reach the stage.
    server
        .pipelines(&team.ops.token)
        .update_pipeline(update_steps(
            customer_id,
            deploy.id,
            "echo $DEPLOY_KEY | rev",
        ))
        .await
        .expect("rewrite");
    let still = stage_of(&server, customer_id, deployed.id).await;
    assert_eq!(still.snapshot_digest, waiting.snapshot_digest);
    let approve = |digest: &str| pb::ApproveStageRequest {
        customer_id,
        stage_execution_id: waiting.id,
        comment: "reviewed".into(),
        snapshot_digest: digest.into(),
    };
    // The developer deployed but is no approver; devops deployed nothing and may approve.
    assert_status(
        developer.approve_stage(approve("")).await,
        Code::PermissionDenied,
        "approver roles",
    );
    assert_status(
        server
            .releases(&team.ops.token)
            .approve_stage(approve(&format!("sha256:{}", "0".repeat(64))))
            .await,
        Code::FailedPrecondition,
        "is not what stage execution",
    );
    assert!(
        team.jobs.lock().expect("jobs").is_empty(),
        "nothing ran yet"
    );
    server
        .releases(&team.ops.token)
        .approve_stage(approve(&waiting.snapshot_digest))
        .await
        .expect("approve what was reviewed");
    let done = wait_for_stage(
        &server,
        customer_id,
        deployed.id,
        pb::StageStatus::Succeeded,
    )
    .await;
    let job = team.job(done.execution_id).expect("the stage's job");
    assert_eq!(job.steps.len(), 1);
    assert_eq!(
        job.steps[0].command, "./deploy.sh",
        "the approved steps ran"
    );
    assert_eq!(job.parameters["TARGET"], "eu");
    let key = job
        .variables
        .iter()
        .find(|variable| variable.key == "DEPLOY_KEY")
        .expect("the environment's secret reached the approved stage");
    assert!(key.is_secret);
    // A run of the rewritten pipeline gets no environment's secret.
    let run = server
        .pipelines(&team.ops.token)
        .run_pipeline(pb::RunPipelineRequest {
            customer_id,
            pipeline_id: deploy.id,
            ..Default::default()
        })
        .await
        .expect("run")
        .into_inner()
        .execution
        .expect("execution");
    eventually("the run ran", Duration::from_secs(10), || async {
        team.job(run.id).is_some()
    })
    .await;
    let job = team.job(run.id).expect("job");
    assert_eq!(job.steps[0].command, "echo $DEPLOY_KEY | rev");
    assert!(
        job.variables
            .iter()
            .all(|variable| variable.key != "DEPLOY_KEY")
    );

    // Four eyes in an environment with any name: whoever deployed may not approve...
    let again = server
        .releases(&team.ops.token)
        .deploy_release(deploy_request(vec![]))
        .await
        .expect("deploy again")
        .into_inner()
        .release_execution
        .expect("release execution");
    let second = wait_for_stage(
        &server,
        customer_id,
        again.id,
        pb::StageStatus::AwaitingApproval,
    )
    .await;
    assert_ne!(
        second.snapshot_digest, waiting.snapshot_digest,
        "new steps, new digest"
    );
    let approve_second = pb::ApproveStageRequest {
        customer_id,
        stage_execution_id: second.id,
        ..Default::default()
    };
    assert_status(
        server
            .releases(&team.ops.token)
            .approve_stage(approve_second.clone())
            .await,
        Code::PermissionDenied,
        "may not approve its prod-eu stage (environment setting allow_self_approval is off)",
    );
    // ...unless the environment allows it, which only an admin may say.
    assert_status(
        server
            .releases(&team.ops.token)
            .update_environment(pb::UpdateEnvironmentRequest {
                customer_id,
                environment_id: live.id,
                allow_self_approval: Some(true),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "may not allow self-approval",
    );
    let updated = server
        .releases(&team.admin.token)
        .update_environment(pb::UpdateEnvironmentRequest {
            customer_id,
            environment_id: live.id,
            allow_self_approval: Some(true),
            ..Default::default()
        })
        .await
        .expect("allow self-approval")
        .into_inner()
        .environment
        .expect("environment");
    assert!(updated.allow_self_approval);
    server
        .releases(&team.ops.token)
        .approve_stage(approve_second)
        .await
        .expect("self-approval allowed here now");
    wait_for_stage(&server, customer_id, again.id, pb::StageStatus::Succeeded).await;
}

async fn mint(
    server: &TestServer,
    token: &str,
    name: &str,
    expires_at: Option<prost_types::Timestamp>,
) -> Result<pb::CreateApiTokenResponse, tonic::Status> {
    server
        .users(token)
        .create_api_token(pb::CreateApiTokenRequest {
            name: name.into(),
            user_id: 0,
            expires_at,
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn whoami(server: &TestServer, token: &str) -> Result<pb::User, tonic::Status> {
    server
        .users(token)
        .get_current_user(pb::GetCurrentUserRequest {})
        .await
        .map(|response| response.into_inner().user.expect("user"))
}

/// A short-lived token mints a token without expiry, which mints another: both expire with
/// it, and revoking it revokes the whole line at once.
async fn minted_tokens_never_outlive_their_parent(backend: Backend) {
    let server = TestServer::start(backend).await;
    let dev = server.create_user("minter").await;
    let in_an_hour = prost_types::Timestamp {
        seconds: chrono::Utc::now().timestamp() + 3600,
        nanos: 0,
    };
    let short = mint(&server, &dev.token, "short", Some(in_an_hour))
        .await
        .expect("short-lived token");
    // The attack: extend the short-lived token's authority with tokens that never expire.
    let child = mint(&server, &short.secret, "forever", None)
        .await
        .expect("child");
    let grandchild = mint(&server, &child.secret, "forever again", None)
        .await
        .expect("grandchild");
    let expiry = |response: &pb::CreateApiTokenResponse| {
        response
            .token
            .as_ref()
            .and_then(|token| token.expires_at)
            .map(|at| at.seconds)
    };
    assert_eq!(expiry(&child), Some(in_an_hour.seconds));
    assert_eq!(expiry(&grandchild), Some(in_an_hour.seconds));
    // Asking for longer than the parent gets the parent's expiry; shorter is kept.
    let later = prost_types::Timestamp {
        seconds: in_an_hour.seconds + 86_400,
        nanos: 0,
    };
    let sooner = prost_types::Timestamp {
        seconds: in_an_hour.seconds - 600,
        nanos: 0,
    };
    let longer = mint(&server, &short.secret, "longer", Some(later))
        .await
        .expect("longer");
    assert_eq!(expiry(&longer), Some(in_an_hour.seconds));
    let shorter = mint(&server, &short.secret, "shorter", Some(sooner))
        .await
        .expect("shorter");
    assert_eq!(expiry(&shorter), Some(sooner.seconds));
    whoami(&server, &grandchild.secret).await.expect("works");
    // Revoking the short-lived token ends everything minted from it, at any depth...
    server
        .users(&dev.token)
        .revoke_api_token(pb::RevokeApiTokenRequest {
            token_id: short.token.as_ref().expect("token").id,
        })
        .await
        .expect("revoke");
    for descendant in [&short, &child, &grandchild, &longer, &shorter] {
        assert_status(
            whoami(&server, &descendant.secret).await,
            Code::Unauthenticated,
            "revoked",
        );
    }
    // ...and nothing else: the token it was minted with still works.
    whoami(&server, &dev.token)
        .await
        .expect("the parent's own parent");
}

async fn my_invitations(server: &TestServer, token: &str) -> Vec<pb::Invitation> {
    server
        .users(token)
        .list_my_invitations(pb::ListMyInvitationsRequest {})
        .await
        .expect("my invitations")
        .into_inner()
        .invitations
}

async fn switcher(server: &TestServer, token: &str) -> Vec<i64> {
    server
        .users(token)
        .get_current_user(pb::GetCurrentUserRequest {})
        .await
        .expect("current user")
        .into_inner()
        .memberships
        .into_iter()
        .map(|membership| membership.customer.expect("customer").id)
        .collect()
}

/// A customer admin can neither add an arbitrary user of the platform nor learn who they are:
/// they invite a username, the same answer whether or not it exists, and the user decides.
async fn memberships_come_by_invitation(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await.id;
    let owner = server.create_user("owner").await;
    server.add_member(acme, owner.id, pb::Role::Admin).await;
    let carol = server.create_user("carol").await;
    let dave = server.create_user("dave").await;
    let mut as_owner = server.customers(&owner.token);
    // The attack: add carol by id, learn her name and e-mail, appear in her switcher.
    let refused = as_owner
        .add_member(pb::AddMemberRequest {
            customer_id: acme,
            user_id: carol.id,
            role: pb::Role::Viewer.into(),
        })
        .await;
    assert_status(
        refused,
        Code::PermissionDenied,
        "invite them (InviteMember)",
    );
    assert_status(
        server
            .users(&owner.token)
            .get_user(pb::GetUserRequest { user_id: carol.id })
            .await,
        Code::NotFound,
        "not found",
    );
    assert!(switcher(&server, &carol.token).await.is_empty());
    // An invitation says nothing about whether the username exists.
    let invite = |username: &str| pb::InviteMemberRequest {
        customer_id: acme,
        username: username.into(),
        role: pb::Role::Developer.into(),
    };
    let to_carol = as_owner
        .invite_member(invite("carol"))
        .await
        .expect("invite carol")
        .into_inner()
        .invitation
        .expect("invitation");
    let to_nobody = as_owner
        .invite_member(invite("nobody-by-that-name"))
        .await
        .expect("invite a username nobody has")
        .into_inner()
        .invitation
        .expect("invitation");
    let shape = |invitation: &pb::Invitation| {
        (
            invitation.customer_id,
            invitation.role,
            invitation.invited_by,
            invitation
                .expires_at
                .map(|at| at.seconds - invitation.created_at.map_or(0, |c| c.seconds)),
        )
    };
    assert_eq!(shape(&to_carol), shape(&to_nobody));
    assert_eq!(to_carol.username, "carol");
    // Nothing changes for carol until she accepts; nobody else can accept for her.
    assert!(switcher(&server, &carol.token).await.is_empty());
    let offered = my_invitations(&server, &carol.token).await;
    assert_eq!(offered.len(), 1);
    assert_eq!(offered[0].id, to_carol.id);
    assert_eq!(offered[0].customer_display_name, "acme display");
    assert!(my_invitations(&server, &dave.token).await.is_empty());
    assert_status(
        server
            .users(&dave.token)
            .accept_invitation(pb::AcceptInvitationRequest {
                invitation_id: to_carol.id,
            })
            .await,
        Code::NotFound,
        &format!("invitation {} not found", to_carol.id),
    );
    let joined = server
        .users(&carol.token)
        .accept_invitation(pb::AcceptInvitationRequest {
            invitation_id: to_carol.id,
        })
        .await
        .expect("carol accepts")
        .into_inner()
        .membership
        .expect("membership");
    let membership = joined.membership.expect("membership");
    assert_eq!(membership.role(), pb::Role::Developer);
    assert!(membership.is_default);
    assert_eq!(switcher(&server, &carol.token).await, [acme]);
    assert_status(
        server
            .users(&carol.token)
            .accept_invitation(pb::AcceptInvitationRequest {
                invitation_id: to_carol.id,
            })
            .await,
        Code::NotFound,
        "not found",
    );
    // Now a member: visible to the customer, and not invitable twice.
    server
        .users(&owner.token)
        .get_user(pb::GetUserRequest { user_id: carol.id })
        .await
        .expect("a member is visible");
    assert_status(
        as_owner.invite_member(invite("carol")).await,
        Code::AlreadyExists,
        "already a member",
    );
    // Declined and withdrawn invitations are gone; a developer may not invite.
    let to_dave = as_owner
        .invite_member(invite("dave"))
        .await
        .expect("invite dave")
        .into_inner()
        .invitation
        .expect("invitation");
    server
        .users(&dave.token)
        .decline_invitation(pb::DeclineInvitationRequest {
            invitation_id: to_dave.id,
        })
        .await
        .expect("dave declines");
    assert!(switcher(&server, &dave.token).await.is_empty());
    as_owner
        .revoke_invitation(pb::RevokeInvitationRequest {
            customer_id: acme,
            invitation_id: to_nobody.id,
        })
        .await
        .expect("withdraw");
    // dave's decline does not show: the admin cannot tell it from silence until it lapses.
    let open: Vec<i64> = as_owner
        .list_invitations(pb::ListInvitationsRequest { customer_id: acme })
        .await
        .expect("list")
        .into_inner()
        .invitations
        .into_iter()
        .map(|invitation| invitation.id)
        .collect();
    assert_eq!(open, [to_dave.id]);
    assert!(my_invitations(&server, &dave.token).await.is_empty());
    assert_status(
        server
            .customers(&carol.token)
            .invite_member(invite("dave"))
            .await,
        Code::PermissionDenied,
        "role developer may not manage members",
    );
}

/// A secret scoped to an environment that requires approval reaches only a stage approved
/// there: a stage deployed before the environment required approval does not get it.
async fn an_environments_secrets_need_its_approval(backend: Backend) {
    let server = TestServer::start(backend).await;
    let team = team(&server, "gate").await;
    let customer_id = team.customer_id;
    let first = create_environment(&server, customer_id, "gate-one", false).await;
    let second = server
        .admin_releases()
        .create_environment(pb::CreateEnvironmentRequest {
            customer_id,
            name: "gate-two".into(),
            order: 11,
            ..Default::default()
        })
        .await
        .expect("environment without approval")
        .into_inner()
        .environment
        .expect("environment");
    let group = team
        .secret_group(&server, "two-keys", "TWO_KEY", second.id)
        .await;
    let deploy = server
        .pipelines(&team.ops.token)
        .create_pipeline(pb::CreatePipelineRequest {
            customer_id,
            name: "deploy".into(),
            steps: vec![step("deploy", "./deploy.sh")],
            variable_group_ids: vec![group],
            ..Default::default()
        })
        .await
        .expect("pipeline")
        .into_inner()
        .pipeline
        .expect("pipeline");
    let stage = |order, environment_id| pb::ReleaseStage {
        order,
        environment_id,
        pipeline_id: deploy.id,
        ..Default::default()
    };
    let release = server
        .releases(&team.ops.token)
        .create_release(pb::CreateReleaseRequest {
            customer_id,
            name: "gated".into(),
            stages: vec![stage(1, first.id), stage(2, second.id)],
            ..Default::default()
        })
        .await
        .expect("release")
        .into_inner()
        .release
        .expect("release");
    let deployed = server
        .releases(&team.developer.token)
        .deploy_release(pb::DeployReleaseRequest {
            customer_id,
            release_id: release.id,
            version: "1".into(),
            ..Default::default()
        })
        .await
        .expect("deploy")
        .into_inner()
        .release_execution
        .expect("release execution");
    eventually(
        "first stage awaits approval",
        Duration::from_secs(10),
        || async {
            server
                .release_execution(customer_id, deployed.id)
                .await
                .stages[0]
                .status()
                == pb::StageStatus::AwaitingApproval
        },
    )
    .await;
    // The second environment starts requiring approval after the deploy fixed its stages.
    server
        .admin_releases()
        .update_environment(pb::UpdateEnvironmentRequest {
            customer_id,
            environment_id: second.id,
            requires_approval: Some(true),
            approver_roles: vec![pb::Role::Admin.into()],
            set_approver_roles: true,
            ..Default::default()
        })
        .await
        .expect("now gated");
    let first_stage = server
        .release_execution(customer_id, deployed.id)
        .await
        .stages[0]
        .id;
    server
        .releases(&team.ops.token)
        .approve_stage(pb::ApproveStageRequest {
            customer_id,
            stage_execution_id: first_stage,
            ..Default::default()
        })
        .await
        .expect("approve the first stage");
    eventually("the release ends", Duration::from_secs(10), || async {
        server
            .release_execution(customer_id, deployed.id)
            .await
            .status()
            != pb::ReleaseExecutionStatus::InProgress
    })
    .await;
    let ended = server.release_execution(customer_id, deployed.id).await;
    assert_eq!(ended.stages[0].status(), pb::StageStatus::Succeeded);
    assert_eq!(
        ended.stages[1].status(),
        pb::StageStatus::Failed,
        "{ended:?}"
    );
    let second_run = server
        .execution(customer_id, ended.stages[1].execution_id)
        .await;
    assert!(
        second_run
            .failure_reason
            .contains("requires an approval this stage does not have"),
        "{second_run:?}"
    );
    assert!(
        team.job(second_run.id).is_none(),
        "the job never reached the agent"
    );
}

/// A stolen token cannot multiply itself without bound: a user holds at most 1,000 live
/// tokens; the next is RESOURCE_EXHAUSTED naming the limit, and revoking makes room again.
async fn live_tokens_per_user_are_bounded(backend: Backend) {
    let server = TestServer::start(backend).await;
    let dev = server.create_user("many").await;
    // The test user's own token is the first.
    let mut tasks = Vec::new();
    for task in 0..8 {
        let channel = server.users(&dev.token);
        tasks.push(tokio::spawn(async move {
            let mut client = channel;
            let mut minted = Vec::new();
            for index in 0..(999 / 8 + 1) {
                if task * (999 / 8 + 1) + index >= 999 {
                    break;
                }
                let token = client
                    .create_api_token(pb::CreateApiTokenRequest {
                        name: format!("t{task}-{index}"),
                        user_id: 0,
                        expires_at: None,
                    })
                    .await
                    .expect("within the limit")
                    .into_inner();
                minted.push(token.token.expect("token").id);
            }
            minted
        }));
    }
    let mut minted = Vec::new();
    for task in tasks {
        minted.extend(task.await.expect("task"));
    }
    assert_eq!(minted.len(), 999);
    let over = mint(&server, &dev.token, "one too many", None).await;
    assert_status(
        over,
        Code::ResourceExhausted,
        "the most a user may have (1000)",
    );
    server
        .users(&dev.token)
        .revoke_api_token(pb::RevokeApiTokenRequest {
            token_id: minted[0],
        })
        .await
        .expect("revoke one");
    mint(&server, &dev.token, "room again", None)
        .await
        .expect("a revoked token makes room");
}

cygnet_testkit::backend_tests!(
    only_secret_managers_hand_secrets_to_code,
    an_approval_binds_the_snapshot_that_runs,
    minted_tokens_never_outlive_their_parent,
    memberships_come_by_invitation,
    an_environments_secrets_need_its_approval,
    live_tokens_per_user_are_bounded,
);
