//! `cygnet.v1.ReleaseService`.

use cygnet_proto::v1::{self as pb, release_service_server::ReleaseService};
use tonic::{Request, Response, Status};

use super::ApiContext;
use super::watch::{AccessCheck, SAFETY_POLL, WatchStream, Watcher, spawn_watch};
use crate::audit;
use crate::auth::{self, Action, TenantScope};
use crate::domain::ValidationError;
use crate::domain::ids::parse_optional;
use crate::domain::release::{
    DeployRequest, EnvironmentPatch, NewEnvironment, ReleaseDefinition, ReleaseExecution,
    ReleasePatch,
};
use crate::domain::release_flow::Decision;
use crate::domain::validate::optional_text;
use crate::domain::{
    CustomerId, EnvironmentId, PageRequest, ReleaseExecutionId, ReleaseId, StageExecutionId,
};
use crate::service::Operations;
use crate::store::Store;
use crate::wire::release::release_status_filter;

/// Handler of `ReleaseService`.
#[derive(Clone)]
pub struct ReleaseApi {
    context: ApiContext,
    operations: Operations,
}

impl ReleaseApi {
    pub fn new(context: ApiContext, operations: Operations) -> Self {
        Self {
            context,
            operations,
        }
    }

    async fn scope<T>(
        &self,
        request: &Request<T>,
        customer_id: i64,
        action: Action,
    ) -> Result<TenantScope, Status> {
        self.context
            .scope(request.metadata(), customer_id, action)
            .await
    }

    /// ApproveStage and RejectStage: who may decide is the environment's business
    /// (`auth::require_stage_approver`, checked under the release's lock); the action here only
    /// admits members.
    async fn decide<T>(
        &self,
        request: &Request<T>,
        customer_id: i64,
        stage_execution_id: i64,
        comment: &str,
        reviewed_digest: &str,
        decision: Decision,
    ) -> Result<ReleaseExecution, Status> {
        audit::note_resource("stage_execution", stage_execution_id);
        let stage_id = StageExecutionId::parse(stage_execution_id, "stage_execution_id");
        let comment = optional_text("comment", comment, 1000);
        let digest = if reviewed_digest.len() > 100 {
            Err(ValidationError::new(
                "snapshot_digest",
                "must be at most 100 characters (sha256:<64 hex digits>)",
            ))
        } else {
            Ok(reviewed_digest)
        };
        let action = match decision {
            Decision::Approve => Action::ApproveStages,
            Decision::Reject => Action::RejectStages,
        };
        let scope = self.scope(request, customer_id, action).await?;
        let reviewed_digest = digest?;
        Ok(self
            .operations
            .decide_stage(&scope, stage_id?, decision, &comment?, reviewed_digest)
            .await?)
    }
}

#[tonic::async_trait]
impl ReleaseService for ReleaseApi {
    type WatchReleaseExecutionStream = WatchStream<pb::WatchReleaseExecutionResponse>;

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn create_environment(
        &self,
        request: Request<pb::CreateEnvironmentRequest>,
    ) -> Result<Response<pb::CreateEnvironmentResponse>, Status> {
        let new = NewEnvironment::try_from(request.get_ref());
        let scope = self
            .scope(
                &request,
                request.get_ref().customer_id,
                Action::ManageReleases,
            )
            .await?;
        let new = new?;
        if new.allow_self_approval {
            auth::require(&scope, Action::ManageApprovalPolicy)?;
        }
        let environment = self.context.store.create_environment(&scope, new).await?;
        audit::note_resource("environment", environment.id.get());
        Ok(Response::new(pb::CreateEnvironmentResponse {
            environment: Some(environment.into()),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn list_environments(
        &self,
        request: Request<pb::ListEnvironmentsRequest>,
    ) -> Result<Response<pb::ListEnvironmentsResponse>, Status> {
        let page = PageRequest::parse(request.get_ref().page_size, &request.get_ref().page_token);
        let scope = self
            .scope(
                &request,
                request.get_ref().customer_id,
                Action::ReadReleases,
            )
            .await?;
        let page = self.context.store.list_environments(&scope, page?).await?;
        Ok(Response::new(pb::ListEnvironmentsResponse {
            environments: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn update_environment(
        &self,
        request: Request<pb::UpdateEnvironmentRequest>,
    ) -> Result<Response<pb::UpdateEnvironmentResponse>, Status> {
        audit::note_resource("environment", request.get_ref().environment_id);
        let environment_id =
            EnvironmentId::parse(request.get_ref().environment_id, "environment_id");
        let patch = EnvironmentPatch::try_from(request.get_ref());
        let scope = self
            .scope(
                &request,
                request.get_ref().customer_id,
                Action::ManageReleases,
            )
            .await?;
        let patch = patch?;
        // Four eyes is the admins' to waive: devops may deploy and approve, not both at once.
        if patch.allow_self_approval.is_some() {
            auth::require(&scope, Action::ManageApprovalPolicy)?;
        }
        let environment = self
            .context
            .store
            .update_environment(&scope, environment_id?, patch)
            .await?;
        Ok(Response::new(pb::UpdateEnvironmentResponse {
            environment: Some(environment.into()),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn create_release(
        &self,
        request: Request<pb::CreateReleaseRequest>,
    ) -> Result<Response<pb::CreateReleaseResponse>, Status> {
        let definition = ReleaseDefinition::try_from(request.get_ref());
        let scope = self
            .scope(
                &request,
                request.get_ref().customer_id,
                Action::ManageReleases,
            )
            .await?;
        let release = self
            .context
            .store
            .create_release(&scope, definition?)
            .await?;
        audit::note_resource("release", release.id.get());
        tracing::info!(release_id = release.id.get(), "release created");
        Ok(Response::new(pb::CreateReleaseResponse {
            release: Some(release.into()),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn get_release(
        &self,
        request: Request<pb::GetReleaseRequest>,
    ) -> Result<Response<pb::GetReleaseResponse>, Status> {
        let release_id = ReleaseId::parse(request.get_ref().release_id, "release_id");
        let scope = self
            .scope(
                &request,
                request.get_ref().customer_id,
                Action::ReadReleases,
            )
            .await?;
        let release = self.context.store.get_release(&scope, release_id?).await?;
        Ok(Response::new(pb::GetReleaseResponse {
            release: Some(release.into()),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn list_releases(
        &self,
        request: Request<pb::ListReleasesRequest>,
    ) -> Result<Response<pb::ListReleasesResponse>, Status> {
        let body = request.get_ref();
        let page = PageRequest::parse(body.page_size, &body.page_token);
        let scope = self
            .scope(&request, body.customer_id, Action::ReadReleases)
            .await?;
        let page = self
            .context
            .store
            .list_releases(&scope, page?, request.get_ref().include_archived)
            .await?;
        Ok(Response::new(pb::ListReleasesResponse {
            releases: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn update_release(
        &self,
        request: Request<pb::UpdateReleaseRequest>,
    ) -> Result<Response<pb::UpdateReleaseResponse>, Status> {
        audit::note_resource("release", request.get_ref().release_id);
        let release_id = ReleaseId::parse(request.get_ref().release_id, "release_id");
        let patch = ReleasePatch::try_from(request.get_ref());
        let scope = self
            .scope(
                &request,
                request.get_ref().customer_id,
                Action::ManageReleases,
            )
            .await?;
        let release = self
            .context
            .store
            .update_release(&scope, release_id?, patch?)
            .await?;
        Ok(Response::new(pb::UpdateReleaseResponse {
            release: Some(release.into()),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn archive_release(
        &self,
        request: Request<pb::ArchiveReleaseRequest>,
    ) -> Result<Response<pb::ArchiveReleaseResponse>, Status> {
        audit::note_resource("release", request.get_ref().release_id);
        let release_id = ReleaseId::parse(request.get_ref().release_id, "release_id");
        let scope = self
            .scope(
                &request,
                request.get_ref().customer_id,
                Action::ManageReleases,
            )
            .await?;
        let release = self
            .context
            .store
            .archive_release(&scope, release_id?)
            .await?;
        Ok(Response::new(pb::ArchiveReleaseResponse {
            release: Some(release.into()),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id, release_id = request.get_ref().release_id))]
    async fn deploy_release(
        &self,
        request: Request<pb::DeployReleaseRequest>,
    ) -> Result<Response<pb::DeployReleaseResponse>, Status> {
        audit::note_resource("release", request.get_ref().release_id);
        let release_id = ReleaseId::parse(request.get_ref().release_id, "release_id");
        let deploy = DeployRequest::try_from(request.get_ref());
        let scope = self
            .scope(
                &request,
                request.get_ref().customer_id,
                Action::DeployReleases,
            )
            .await?;
        let release_execution = self
            .operations
            .deploy_release(&scope, release_id?, deploy?)
            .await?;
        Ok(Response::new(pb::DeployReleaseResponse {
            release_execution: Some(release_execution.into()),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn get_release_execution(
        &self,
        request: Request<pb::GetReleaseExecutionRequest>,
    ) -> Result<Response<pb::GetReleaseExecutionResponse>, Status> {
        let id = ReleaseExecutionId::parse(
            request.get_ref().release_execution_id,
            "release_execution_id",
        );
        let scope = self
            .scope(
                &request,
                request.get_ref().customer_id,
                Action::ReadReleases,
            )
            .await?;
        let release_execution = self
            .context
            .store
            .get_release_execution(&scope, id?)
            .await?;
        Ok(Response::new(pb::GetReleaseExecutionResponse {
            release_execution: Some(release_execution.into()),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn list_release_executions(
        &self,
        request: Request<pb::ListReleaseExecutionsRequest>,
    ) -> Result<Response<pb::ListReleaseExecutionsResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let body = request.get_ref();
        let page = PageRequest::parse(body.page_size, &body.page_token)?;
        let release_id = parse_optional(body.release_id, "release_id", ReleaseId::parse)?;
        let status = release_status_filter("status", body.status)?;
        let scope = self
            .context
            .authorize(&principal, body.customer_id, Action::ReadReleases)
            .await?;
        let page = self
            .context
            .store
            .list_release_executions(&scope, release_id, status, page)
            .await?;
        Ok(Response::new(pb::ListReleaseExecutionsResponse {
            release_executions: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id, stage_execution_id = request.get_ref().stage_execution_id))]
    async fn approve_stage(
        &self,
        request: Request<pb::ApproveStageRequest>,
    ) -> Result<Response<pb::ApproveStageResponse>, Status> {
        let body = request.get_ref();
        let release_execution = self
            .decide(
                &request,
                body.customer_id,
                body.stage_execution_id,
                &body.comment,
                &body.snapshot_digest,
                Decision::Approve,
            )
            .await?;
        Ok(Response::new(pb::ApproveStageResponse {
            release_execution: Some(release_execution.into()),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id, stage_execution_id = request.get_ref().stage_execution_id))]
    async fn reject_stage(
        &self,
        request: Request<pb::RejectStageRequest>,
    ) -> Result<Response<pb::RejectStageResponse>, Status> {
        let body = request.get_ref();
        let release_execution = self
            .decide(
                &request,
                body.customer_id,
                body.stage_execution_id,
                &body.comment,
                "",
                Decision::Reject,
            )
            .await?;
        Ok(Response::new(pb::RejectStageResponse {
            release_execution: Some(release_execution.into()),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id, release_execution_id = request.get_ref().release_execution_id))]
    async fn cancel_release_execution(
        &self,
        request: Request<pb::CancelReleaseExecutionRequest>,
    ) -> Result<Response<pb::CancelReleaseExecutionResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let customer_id = CustomerId::parse(request.get_ref().customer_id, "customer_id")?;
        let id = ReleaseExecutionId::parse(
            request.get_ref().release_execution_id,
            "release_execution_id",
        )?;
        audit::note_resource("release_execution", id.get());
        let scope = self
            .context
            .authorizer
            .scope(&principal, customer_id, Action::CancelReleases)
            .await?;
        let reason = format!("cancelled by {}", principal.username);
        let release_execution = self.operations.cancel_release(&scope, id, &reason).await?;
        Ok(Response::new(pb::CancelReleaseExecutionResponse {
            release_execution: Some(release_execution.into()),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id, release_execution_id = request.get_ref().release_execution_id))]
    async fn watch_release_execution(
        &self,
        request: Request<pb::WatchReleaseExecutionRequest>,
    ) -> Result<Response<Self::WatchReleaseExecutionStream>, Status> {
        let id = ReleaseExecutionId::parse(
            request.get_ref().release_execution_id,
            "release_execution_id",
        );
        let scope = self
            .scope(
                &request,
                request.get_ref().customer_id,
                Action::ReadReleases,
            )
            .await?;
        let id = id?;
        let signal = self.operations.release_signals().subscribe(id);
        let first = self.context.store.get_release_execution(&scope, id).await?;
        let ticket = self.context.open_watch(&scope).await?;
        let store = self.context.store.clone();
        let access = AccessCheck::new(
            &self.context,
            request.metadata(),
            request.get_ref().customer_id,
            Action::ReadReleases,
        );
        Ok(Response::new(spawn_watch(
            16,
            ticket,
            access,
            move |watcher| watch(store, scope, first, signal, watcher),
        )))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn list_release_artifacts(
        &self,
        request: Request<pb::ListReleaseArtifactsRequest>,
    ) -> Result<Response<pb::ListReleaseArtifactsResponse>, Status> {
        let id = ReleaseExecutionId::parse(
            request.get_ref().release_execution_id,
            "release_execution_id",
        );
        let scope = self
            .scope(
                &request,
                request.get_ref().customer_id,
                Action::ReadReleases,
            )
            .await?;
        let artifacts = self
            .context
            .store
            .list_release_artifacts(&scope, id?)
            .await?;
        Ok(Response::new(pb::ListReleaseArtifactsResponse {
            artifacts: artifacts.into_iter().map(Into::into).collect(),
        }))
    }
}

/// Sends the release execution whenever it changes, until it has ended.
async fn watch(
    store: Store,
    scope: TenantScope,
    mut last: ReleaseExecution,
    mut signal: tokio::sync::watch::Receiver<u64>,
    watcher: Watcher<pb::WatchReleaseExecutionResponse>,
) {
    let send = |execution: ReleaseExecution| {
        watcher.send(pb::WatchReleaseExecutionResponse {
            release_execution: Some(execution.into()),
        })
    };
    if !send(last.clone()).await || last.status.is_terminal() {
        return;
    }
    loop {
        if !watcher.wait_for_change(&mut signal, SAFETY_POLL).await {
            return;
        }
        signal.mark_unchanged();
        let current = match store.get_release_execution(&scope, last.id).await {
            Ok(current) => current,
            Err(error) => return watcher.fail(error).await,
        };
        if current != last {
            if !send(current.clone()).await || current.status.is_terminal() {
                return;
            }
            last = current;
        }
    }
}
