//! The customer's releases with Deploy, their deployments (stages as pills, each linking to its
//! page), the environments, and the forms that create an environment and a release — each sent
//! through `ReleaseService`, a refusal shown at the input its field names.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use cygnet_proto::v1 as pb;
use cygnet_proto::v1::pipeline_service_server::PipelineService;
use cygnet_proto::v1::release_service_server::ReleaseService;

use super::form::{Fields, FormErrors};
use super::{Frame, frame, id, try_write};
use crate::web::Web;
use crate::web::error::{WebError, render, render_with};
use crate::web::session::{Peer, Session};
use crate::web::view;

pub struct ReleaseView {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub status: String,
    pub active: bool,
    pub environments: String,
}

pub struct PillView {
    pub id: i64,
    pub environment: String,
    pub status: String,
}

pub struct RunView {
    pub id: i64,
    pub title: String,
    pub status: String,
    pub created: String,
    pub stages: Vec<PillView>,
}

pub struct EnvironmentView {
    pub name: String,
    pub approval: String,
    pub self_approval: bool,
}

/// A pipeline offered as a build the new release ships.
pub struct PipelineChoice {
    pub id: i64,
    pub name: String,
    pub checked: bool,
}

/// The new-environment form as typed.
pub struct EnvironmentForm {
    pub name: String,
    pub description: String,
    pub requires_approval: bool,
    pub approvers: Vec<String>,
    pub allow_self_approval: bool,
}

impl Default for EnvironmentForm {
    fn default() -> Self {
        EnvironmentForm {
            name: String::new(),
            description: String::new(),
            requires_approval: true,
            approvers: vec!["admin".into(), "devops".into()],
            allow_self_approval: false,
        }
    }
}

impl EnvironmentForm {
    pub fn approves(&self, role: &str) -> bool {
        self.approvers.iter().any(|chosen| chosen == role)
    }
}

/// The new-release form as typed.
#[derive(Default)]
pub struct ReleaseForm {
    pub name: String,
    pub description: String,
    pub builds: Vec<i64>,
    pub stages: String,
}

/// The Deploy form of one release as typed, with its refusal.
#[derive(Default)]
pub struct DeployForm {
    pub release_id: i64,
    pub version: String,
    pub parameters: String,
    pub errors: FormErrors,
}

#[derive(Template)]
#[template(path = "releases.html")]
struct ReleasesPage {
    frame: Frame,
    releases: Vec<ReleaseView>,
    runs: Vec<RunView>,
    environments: Vec<EnvironmentView>,
    pipelines: Vec<PipelineChoice>,
    may_manage: bool,
    manage_reason: String,
    may_deploy: bool,
    deploy_reason: String,
    environment_form: EnvironmentForm,
    environment_errors: FormErrors,
    release_form: ReleaseForm,
    release_errors: FormErrors,
    deploy: DeployForm,
}

impl ReleasesPage {
    /// The Deploy form of `release`: as typed when it was the one refused, else empty.
    fn deploy_of(&self, release: &i64) -> DeployForm {
        if self.deploy.release_id == *release {
            DeployForm {
                release_id: *release,
                version: self.deploy.version.clone(),
                parameters: self.deploy.parameters.clone(),
                errors: self.deploy.errors.clone(),
            }
        } else {
            DeployForm::default()
        }
    }
}

/// What the page holds besides what it reads: the forms as typed and their refusals.
#[derive(Default)]
struct Typed {
    environment_form: EnvironmentForm,
    environment_errors: FormErrors,
    release_form: ReleaseForm,
    release_errors: FormErrors,
    deploy: DeployForm,
}

const ROLES: [(&str, pb::Role); 5] = [
    ("admin", pb::Role::Admin),
    ("devops", pb::Role::Devops),
    ("developer", pb::Role::Developer),
    ("qa", pb::Role::Qa),
    ("viewer", pb::Role::Viewer),
];

pub(super) async fn environments(
    web: &Web,
    session: &Session,
    customer_id: i64,
) -> Result<Vec<pb::Environment>, WebError> {
    // The first thousand: environments have no quota, and a page stays bounded.
    Ok(web
        .releases
        .list_environments(session.request(pb::ListEnvironmentsRequest {
            customer_id,
            page_size: 1000,
            page_token: String::new(),
        }))
        .await?
        .into_inner()
        .environments)
}

async fn pipelines(
    web: &Web,
    session: &Session,
    customer_id: i64,
) -> Result<Vec<pb::Pipeline>, WebError> {
    Ok(every!(
        web.pipelines,
        list_pipelines,
        session,
        ListPipelinesRequest {
            customer_id,
            page_size: 1000,
        },
        pipelines
    )
    .await?
    .0)
}

async fn page(
    web: &Web,
    session: &Session,
    customer_id: i64,
    typed: Typed,
) -> Result<ReleasesPage, WebError> {
    let frame = frame(web, session, customer_id, "releases").await?;
    let environments = environments(web, session, customer_id).await?;
    let environment_name: HashMap<i64, String> = environments
        .iter()
        .map(|environment| (environment.id, environment.name.clone()))
        .collect();
    let environment_name = |id: i64| {
        environment_name
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("environment {id}"))
    };
    // The first thousand: releases have no quota, and a page stays bounded.
    let releases = web
        .releases
        .list_releases(session.request(pb::ListReleasesRequest {
            customer_id,
            page_size: 1000,
            ..Default::default()
        }))
        .await?
        .into_inner()
        .releases;
    let releases = releases
        .into_iter()
        .map(|release| ReleaseView {
            id: release.id,
            active: release.status == pb::ReleaseStatus::Active as i32,
            status: pb::ReleaseStatus::try_from(release.status)
                .map(|status| {
                    status
                        .as_str_name()
                        .trim_start_matches("RELEASE_STATUS_")
                        .to_ascii_lowercase()
                })
                .unwrap_or_default(),
            environments: release
                .stages
                .iter()
                .map(|stage| environment_name(stage.environment_id))
                .collect::<Vec<_>>()
                .join(" → "),
            name: release.name,
            description: release.description,
        })
        .collect();
    let runs = web
        .releases
        .list_release_executions(session.request(pb::ListReleaseExecutionsRequest {
            customer_id,
            page_size: 20,
            ..Default::default()
        }))
        .await?
        .into_inner()
        .release_executions
        .into_iter()
        .map(|run| RunView {
            id: run.id,
            title: format!("{} {} (#{})", run.release_name, run.version, run.number),
            status: view::release_execution_status(run.status),
            created: view::time(run.created_at.as_ref()),
            stages: run
                .stages
                .into_iter()
                .map(|stage| PillView {
                    id: stage.id,
                    environment: if stage.environment_name.is_empty() {
                        environment_name(stage.environment_id)
                    } else {
                        stage.environment_name
                    },
                    status: view::stage_status(stage.status),
                })
                .collect(),
        })
        .collect();
    let pipelines = pipelines(web, session, customer_id)
        .await?
        .into_iter()
        .map(|pipeline| PipelineChoice {
            checked: typed.release_form.builds.contains(&pipeline.id),
            id: pipeline.id,
            name: pipeline.name,
        })
        .collect();
    let environments = environments
        .into_iter()
        .map(|environment| EnvironmentView {
            approval: if environment.requires_approval {
                let roles: Vec<String> = environment
                    .approver_roles
                    .iter()
                    .map(|role| view::role(*role))
                    .collect();
                format!("approved by {}", roles.join(", "))
            } else {
                "no approval".into()
            },
            self_approval: environment.allow_self_approval,
            name: environment.name,
        })
        .collect();
    let (may_manage, manage_reason) = frame.allowed(
        &[pb::Role::Admin, pb::Role::Devops],
        "create environments and releases",
    );
    let (may_deploy, deploy_reason) = frame.allowed(
        &[pb::Role::Admin, pb::Role::Devops, pb::Role::Developer],
        "deploy releases",
    );
    Ok(ReleasesPage {
        frame,
        releases,
        runs,
        environments,
        pipelines,
        may_manage,
        manage_reason,
        may_deploy,
        deploy_reason,
        environment_form: typed.environment_form,
        environment_errors: typed.environment_errors,
        release_form: typed.release_form,
        release_errors: typed.release_errors,
        deploy: typed.deploy,
    })
}

pub async fn releases(
    State(web): State<Web>,
    session: Session,
    Path(customer): Path<String>,
) -> Result<Response, WebError> {
    let customer_id = id(&customer)?;
    Ok(render(
        &page(&web, &session, customer_id, Typed::default()).await?,
    ))
}

/// The page again with a form's refusal (`typed` holds it), answered with `code`.
async fn refused(
    web: &Web,
    session: &Session,
    customer_id: i64,
    typed: Typed,
    code: StatusCode,
) -> Result<Response, WebError> {
    let page = page(web, session, customer_id, typed).await?;
    Ok(render_with(code, &page))
}

pub async fn create_environment(
    State(web): State<Web>,
    session: Session,
    peer: Peer,
    Path(customer): Path<String>,
    fields: Fields,
) -> Result<Response, WebError> {
    let customer_id = id(&customer)?;
    session.check_csrf(&fields.one("csrf"))?;
    let form = EnvironmentForm {
        name: fields.one("name"),
        description: fields.one("description"),
        requires_approval: fields.checked("requires_approval"),
        approvers: fields.all("approver"),
        allow_self_approval: fields.checked("allow_self_approval"),
    };
    // New environments go last.
    let order = environments(&web, &session, customer_id)
        .await?
        .iter()
        .map(|environment| environment.order)
        .max()
        .unwrap_or(0)
        .saturating_add(1);
    let api = web.releases.clone();
    let request = session.request(pb::CreateEnvironmentRequest {
        customer_id,
        name: form.name.trim().to_owned(),
        description: form.description.trim().to_owned(),
        order,
        requires_approval: form.requires_approval,
        approver_roles: ROLES
            .iter()
            .filter(|(name, _)| form.approves(name))
            .map(|(_, role)| *role as i32)
            .collect(),
        allow_self_approval: form.allow_self_approval,
    });
    let outcome = try_write(
        &web,
        peer,
        "cygnet.v1.ReleaseService/CreateEnvironment",
        async move { api.create_environment(request).await },
    )
    .await?;
    match outcome {
        Ok(_) => {
            Ok(Redirect::to(&format!("/c/{customer_id}/releases#environments")).into_response())
        }
        Err(status) => {
            let (errors, code) =
                FormErrors::from_status(status, &["name", "description", "approver_roles"])?;
            let typed = Typed {
                environment_form: form,
                environment_errors: errors,
                ..Typed::default()
            };
            refused(&web, &session, customer_id, typed, code).await
        }
    }
}

/// The stages the form's lines describe (`Environment: deploy pipeline`, in order), or the
/// line that names no environment or pipeline of the customer.
fn parse_stages(
    text: &str,
    environments: &[pb::Environment],
    pipelines: &[pb::Pipeline],
) -> Result<Vec<pb::ReleaseStage>, FormErrors> {
    let mut stages = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line_number = number + 1;
        let Some((environment, pipeline)) = line.split_once(':') else {
            return Err(FormErrors::at(
                "stages",
                format!("stages line {line_number}: write it as environment: deploy pipeline"),
            ));
        };
        let (environment, pipeline) = (environment.trim(), pipeline.trim());
        let environment = environments
            .iter()
            .find(|known| known.name.eq_ignore_ascii_case(environment))
            .ok_or_else(|| {
                FormErrors::at(
                    "stages",
                    format!("stages line {line_number}: no environment is named {environment:?}"),
                )
            })?;
        let pipeline = pipelines
            .iter()
            .find(|known| known.name.eq_ignore_ascii_case(pipeline))
            .ok_or_else(|| {
                FormErrors::at(
                    "stages",
                    format!("stages line {line_number}: no pipeline is named {pipeline:?}"),
                )
            })?;
        stages.push(pb::ReleaseStage {
            order: i32::try_from(stages.len() + 1).unwrap_or(i32::MAX),
            environment_id: environment.id,
            pipeline_id: pipeline.id,
            ..Default::default()
        });
    }
    Ok(stages)
}

pub async fn create_release(
    State(web): State<Web>,
    session: Session,
    peer: Peer,
    Path(customer): Path<String>,
    fields: Fields,
) -> Result<Response, WebError> {
    let customer_id = id(&customer)?;
    session.check_csrf(&fields.one("csrf"))?;
    let mut builds = Vec::new();
    for build in fields.all("build") {
        builds.push(
            build.parse::<i64>().map_err(|_| {
                WebError::Page(StatusCode::BAD_REQUEST, "build must be an id".into())
            })?,
        );
    }
    let form = ReleaseForm {
        name: fields.one("name"),
        description: fields.one("description"),
        builds,
        stages: fields.one("stages"),
    };
    let (environments, pipelines) = tokio::try_join!(
        environments(&web, &session, customer_id),
        pipelines(&web, &session, customer_id),
    )?;
    let stages = match parse_stages(&form.stages, &environments, &pipelines) {
        Ok(stages) => stages,
        Err(errors) => {
            let typed = Typed {
                release_form: form,
                release_errors: errors,
                ..Typed::default()
            };
            return refused(&web, &session, customer_id, typed, StatusCode::BAD_REQUEST).await;
        }
    };
    let api = web.releases.clone();
    let request = session.request(pb::CreateReleaseRequest {
        customer_id,
        name: form.name.trim().to_owned(),
        description: form.description.trim().to_owned(),
        pipeline_ids: form.builds.clone(),
        stages,
    });
    let outcome = try_write(
        &web,
        peer,
        "cygnet.v1.ReleaseService/CreateRelease",
        async move { api.create_release(request).await },
    )
    .await?;
    match outcome {
        Ok(_) => Ok(Redirect::to(&format!("/c/{customer_id}/releases")).into_response()),
        Err(status) => {
            let (errors, code) = FormErrors::from_status(
                status,
                &["name", "description", "pipeline_ids", "stages"],
            )?;
            let typed = Typed {
                release_form: form,
                release_errors: errors,
                ..Typed::default()
            };
            refused(&web, &session, customer_id, typed, code).await
        }
    }
}

/// Deploys a release and opens its deployment's page.
pub async fn deploy_release(
    State(web): State<Web>,
    session: Session,
    peer: Peer,
    Path((customer, release)): Path<(String, String)>,
    fields: Fields,
) -> Result<Response, WebError> {
    let (customer_id, release_id) = (id(&customer)?, id(&release)?);
    session.check_csrf(&fields.one("csrf"))?;
    let mut form = DeployForm {
        release_id,
        version: fields.one("version"),
        parameters: fields.one("parameters"),
        errors: FormErrors::default(),
    };
    let mut parameters = HashMap::new();
    for (number, line) in form.parameters.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            form.errors = FormErrors::at(
                "parameters",
                format!("parameters line {}: write it as NAME=value", number + 1),
            );
            let typed = Typed {
                deploy: form,
                ..Typed::default()
            };
            return refused(&web, &session, customer_id, typed, StatusCode::BAD_REQUEST).await;
        };
        parameters.insert(name.trim().to_owned(), value.trim().to_owned());
    }
    let api = web.releases.clone();
    let request = session.request(pb::DeployReleaseRequest {
        customer_id,
        release_id,
        version: form.version.trim().to_owned(),
        builds: Vec::new(),
        parameters,
    });
    let outcome = try_write(
        &web,
        peer,
        "cygnet.v1.ReleaseService/DeployRelease",
        async move { api.deploy_release(request).await },
    )
    .await?;
    match outcome {
        Ok(deployed) => {
            let run = deployed.release_execution.map_or(0, |run| run.id);
            Ok(Redirect::to(&format!("/c/{customer_id}/deployments/{run}")).into_response())
        }
        Err(status) => {
            let (errors, code) =
                FormErrors::from_status(status, &["version", "parameters", "builds"])?;
            form.errors = errors;
            let typed = Typed {
                deploy: form,
                ..Typed::default()
            };
            refused(&web, &session, customer_id, typed, code).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environment(id: i64, name: &str) -> pb::Environment {
        pb::Environment {
            id,
            name: name.into(),
            ..Default::default()
        }
    }

    fn pipeline(id: i64, name: &str) -> pb::Pipeline {
        pb::Pipeline {
            id,
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn stage_lines_name_environments_and_pipelines() {
        let environments = [environment(3, "Staging"), environment(4, "Production")];
        let pipelines = [pipeline(9, "Deploy API")];
        let stages = parse_stages(
            "staging: deploy api\n\nProduction : Deploy API\n",
            &environments,
            &pipelines,
        )
        .expect("both lines name known records");
        let read: Vec<(i32, i64, i64)> = stages
            .iter()
            .map(|stage| (stage.order, stage.environment_id, stage.pipeline_id))
            .collect();
        assert_eq!(read, [(1, 3, 9), (2, 4, 9)]);

        let unknown = parse_stages(
            "Staging: Deploy API\nQA: Deploy API",
            &environments,
            &pipelines,
        )
        .expect_err("QA is no environment");
        assert_eq!(
            unknown.on("stages"),
            "stages line 2: no environment is named \"QA\""
        );
        let shapeless = parse_stages("Staging", &environments, &pipelines).expect_err("no colon");
        assert!(
            shapeless
                .on("stages")
                .contains("environment: deploy pipeline")
        );
        let missing =
            parse_stages("Staging: Build", &environments, &pipelines).expect_err("no such");
        assert!(
            missing
                .on("stages")
                .contains("no pipeline is named \"Build\"")
        );
    }
}
