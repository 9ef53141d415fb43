//! `cygnet.v1.PipelineService`.

use std::pin::Pin;

use cygnet_proto::v1::{self as pb, pipeline_service_server::PipelineService};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::execution_watch;
use super::watch::{AccessCheck, WatchStream, spawn_watch};
use super::{ApiContext, status};
use crate::artifacts::ArtifactStore;
use crate::audit;
use crate::auth::{Action, TenantScope};
use crate::domain::execution::{ExecutionFilter, RunRequest, Trigger};
use crate::domain::ids::parse_optional;
use crate::domain::pipeline::{PipelineDefinition, PipelinePatch};
use crate::domain::{AgentId, CustomerId, ExecutionId, PageRequest, PipelineId, ValidationError};
use crate::service::Operations;
use crate::wire::pipeline::{execution_status_filter, run_parameters, trigger_kind_filter};

/// Bytes per DownloadArtifact message.
const DOWNLOAD_CHUNK: usize = 64 * 1024;

/// Handler of `PipelineService`.
#[derive(Clone)]
pub struct PipelineApi {
    pub(super) context: ApiContext,
    operations: Operations,
    artifacts: ArtifactStore,
    /// Seals webhook secrets.
    pub(super) secrets: std::sync::Arc<crate::secrets::SecretBox>,
}

impl PipelineApi {
    pub fn new(
        context: ApiContext,
        operations: Operations,
        artifacts: ArtifactStore,
        secrets: std::sync::Arc<crate::secrets::SecretBox>,
    ) -> Self {
        Self {
            context,
            operations,
            artifacts,
            secrets,
        }
    }

    pub(super) async fn scope<T>(
        &self,
        request: &Request<T>,
        customer_id: i64,
        action: Action,
    ) -> Result<TenantScope, Status> {
        self.context
            .scope(request.metadata(), customer_id, action)
            .await
    }
}

pub type DownloadStream =
    Pin<Box<dyn Stream<Item = Result<pb::DownloadArtifactResponse, Status>> + Send>>;

#[tonic::async_trait]
impl PipelineService for PipelineApi {
    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn create_schedule(
        &self,
        request: Request<pb::CreateScheduleRequest>,
    ) -> Result<Response<pb::CreateScheduleResponse>, Status> {
        self.create_schedule_rpc(request).await
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn list_schedules(
        &self,
        request: Request<pb::ListSchedulesRequest>,
    ) -> Result<Response<pb::ListSchedulesResponse>, Status> {
        self.list_schedules_rpc(request).await
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn update_schedule(
        &self,
        request: Request<pb::UpdateScheduleRequest>,
    ) -> Result<Response<pb::UpdateScheduleResponse>, Status> {
        self.update_schedule_rpc(request).await
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn delete_schedule(
        &self,
        request: Request<pb::DeleteScheduleRequest>,
    ) -> Result<Response<pb::DeleteScheduleResponse>, Status> {
        self.delete_schedule_rpc(request).await
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn create_webhook(
        &self,
        request: Request<pb::CreateWebhookRequest>,
    ) -> Result<Response<pb::CreateWebhookResponse>, Status> {
        self.create_webhook_rpc(request).await
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn list_webhooks(
        &self,
        request: Request<pb::ListWebhooksRequest>,
    ) -> Result<Response<pb::ListWebhooksResponse>, Status> {
        self.list_webhooks_rpc(request).await
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn update_webhook(
        &self,
        request: Request<pb::UpdateWebhookRequest>,
    ) -> Result<Response<pb::UpdateWebhookResponse>, Status> {
        self.update_webhook_rpc(request).await
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn delete_webhook(
        &self,
        request: Request<pb::DeleteWebhookRequest>,
    ) -> Result<Response<pb::DeleteWebhookResponse>, Status> {
        self.delete_webhook_rpc(request).await
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn rotate_webhook_secret(
        &self,
        request: Request<pb::RotateWebhookSecretRequest>,
    ) -> Result<Response<pb::RotateWebhookSecretResponse>, Status> {
        self.rotate_webhook_secret_rpc(request).await
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn list_webhook_deliveries(
        &self,
        request: Request<pb::ListWebhookDeliveriesRequest>,
    ) -> Result<Response<pb::ListWebhookDeliveriesResponse>, Status> {
        self.list_webhook_deliveries_rpc(request).await
    }

    type WatchExecutionStream = WatchStream<pb::WatchExecutionResponse>;
    type DownloadArtifactStream = DownloadStream;

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn create_pipeline(
        &self,
        request: Request<pb::CreatePipelineRequest>,
    ) -> Result<Response<pb::CreatePipelineResponse>, Status> {
        let definition = PipelineDefinition::try_from(request.get_ref());
        let scope = self
            .scope(
                &request,
                request.get_ref().customer_id,
                Action::ManagePipelines,
            )
            .await?;
        let pipeline = self
            .context
            .store
            .create_pipeline(&scope, definition?)
            .await?;
        audit::note_resource("pipeline", pipeline.id.get());
        tracing::info!(pipeline_id = pipeline.id.get(), "pipeline created");
        Ok(Response::new(pb::CreatePipelineResponse {
            pipeline: Some(pipeline.into()),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn get_pipeline(
        &self,
        request: Request<pb::GetPipelineRequest>,
    ) -> Result<Response<pb::GetPipelineResponse>, Status> {
        let pipeline_id = PipelineId::parse(request.get_ref().pipeline_id, "pipeline_id");
        let scope = self
            .scope(
                &request,
                request.get_ref().customer_id,
                Action::ReadPipelines,
            )
            .await?;
        let pipeline = self
            .context
            .store
            .get_pipeline(&scope, pipeline_id?)
            .await?;
        Ok(Response::new(pb::GetPipelineResponse {
            pipeline: Some(pipeline.into()),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn list_pipelines(
        &self,
        request: Request<pb::ListPipelinesRequest>,
    ) -> Result<Response<pb::ListPipelinesResponse>, Status> {
        let body = request.get_ref();
        let page = PageRequest::parse(body.page_size, &body.page_token);
        let scope = self
            .scope(&request, body.customer_id, Action::ReadPipelines)
            .await?;
        let page = self.context.store.list_pipelines(&scope, page?).await?;
        Ok(Response::new(pb::ListPipelinesResponse {
            pipelines: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn update_pipeline(
        &self,
        request: Request<pb::UpdatePipelineRequest>,
    ) -> Result<Response<pb::UpdatePipelineResponse>, Status> {
        let body = request.get_ref();
        audit::note_resource("pipeline", body.pipeline_id);
        let pipeline_id = PipelineId::parse(body.pipeline_id, "pipeline_id");
        let patch = PipelinePatch::try_from(body);
        let scope = self
            .scope(&request, body.customer_id, Action::ManagePipelines)
            .await?;
        let pipeline = self
            .context
            .store
            .update_pipeline(&scope, pipeline_id?, patch?)
            .await?;
        Ok(Response::new(pb::UpdatePipelineResponse {
            pipeline: Some(pipeline.into()),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn delete_pipeline(
        &self,
        request: Request<pb::DeletePipelineRequest>,
    ) -> Result<Response<pb::DeletePipelineResponse>, Status> {
        audit::note_resource("pipeline", request.get_ref().pipeline_id);
        let pipeline_id = PipelineId::parse(request.get_ref().pipeline_id, "pipeline_id");
        let scope = self
            .scope(
                &request,
                request.get_ref().customer_id,
                Action::DeletePipelines,
            )
            .await?;
        self.context
            .store
            .delete_pipeline(&scope, pipeline_id?)
            .await?;
        Ok(Response::new(pb::DeletePipelineResponse {}))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id, pipeline_id = request.get_ref().pipeline_id))]
    async fn run_pipeline(
        &self,
        request: Request<pb::RunPipelineRequest>,
    ) -> Result<Response<pb::RunPipelineResponse>, Status> {
        let body = request.get_ref();
        audit::note_resource("pipeline", body.pipeline_id);
        let pipeline_id = PipelineId::parse(body.pipeline_id, "pipeline_id");
        let agent_id = parse_optional(body.agent_id, "agent_id", AgentId::parse);
        let parameters = run_parameters(&body.parameters);
        let scope = self
            .scope(&request, body.customer_id, Action::RunPipelines)
            .await?;
        let run = RunRequest {
            pipeline_id: pipeline_id?,
            parameters,
            agent_id: agent_id?,
            trigger: Trigger::User(scope.actor()),
        };
        let execution = self.operations.queue_run(&scope, run).await?;
        audit::note_resource("execution", execution.id.get());
        Ok(Response::new(pb::RunPipelineResponse {
            execution: Some(execution.into()),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id, execution_id = request.get_ref().execution_id))]
    async fn get_execution(
        &self,
        request: Request<pb::GetExecutionRequest>,
    ) -> Result<Response<pb::GetExecutionResponse>, Status> {
        let execution_id = ExecutionId::parse(request.get_ref().execution_id, "execution_id");
        let scope = self
            .scope(
                &request,
                request.get_ref().customer_id,
                Action::ReadPipelines,
            )
            .await?;
        let execution = self
            .context
            .store
            .get_execution(&scope, execution_id?)
            .await?;
        Ok(Response::new(pb::GetExecutionResponse {
            execution: Some(execution.into()),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn list_executions(
        &self,
        request: Request<pb::ListExecutionsRequest>,
    ) -> Result<Response<pb::ListExecutionsResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let body = request.get_ref();
        let page = PageRequest::parse(body.page_size, &body.page_token)?;
        let filter = ExecutionFilter {
            pipeline_id: parse_optional(body.pipeline_id, "pipeline_id", PipelineId::parse)?,
            status: execution_status_filter("status", body.status)?,
            trigger_kind: trigger_kind_filter("trigger_kind", body.trigger_kind)?,
        };
        let scope = self
            .context
            .authorize(&principal, body.customer_id, Action::ReadPipelines)
            .await?;
        let page = self
            .context
            .store
            .list_executions(&scope, &filter, page)
            .await?;
        Ok(Response::new(pb::ListExecutionsResponse {
            executions: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id, execution_id = request.get_ref().execution_id))]
    async fn cancel_execution(
        &self,
        request: Request<pb::CancelExecutionRequest>,
    ) -> Result<Response<pb::CancelExecutionResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let body = request.get_ref();
        let customer_id = CustomerId::parse(body.customer_id, "customer_id")?;
        let execution_id = ExecutionId::parse(body.execution_id, "execution_id")?;
        audit::note_resource("execution", execution_id.get());
        let scope = self
            .context
            .authorizer
            .scope(&principal, customer_id, Action::CancelExecutions)
            .await?;
        let reason = format!("cancelled by {}", principal.username);
        let (execution, _) = self
            .operations
            .cancel_execution(&scope, execution_id, &reason)
            .await?;
        Ok(Response::new(pb::CancelExecutionResponse {
            execution: Some(execution.into()),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id, execution_id = request.get_ref().execution_id))]
    async fn retry_execution(
        &self,
        request: Request<pb::RetryExecutionRequest>,
    ) -> Result<Response<pb::RetryExecutionResponse>, Status> {
        audit::note_resource("execution", request.get_ref().execution_id);
        let execution_id = ExecutionId::parse(request.get_ref().execution_id, "execution_id");
        let scope = self
            .scope(
                &request,
                request.get_ref().customer_id,
                Action::RunPipelines,
            )
            .await?;
        let execution = self
            .operations
            .retry_execution(&scope, execution_id?)
            .await?;
        audit::note_resource("execution", execution.id.get());
        Ok(Response::new(pb::RetryExecutionResponse {
            execution: Some(execution.into()),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id, execution_id = request.get_ref().execution_id))]
    async fn get_execution_logs(
        &self,
        request: Request<pb::GetExecutionLogsRequest>,
    ) -> Result<Response<pb::GetExecutionLogsResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let body = request.get_ref();
        let execution_id = ExecutionId::parse(body.execution_id, "execution_id")?;
        let page = match body.page_size {
            0 => PageRequest::parse(100, &body.page_token)?,
            size => PageRequest::parse(size, &body.page_token)?,
        };
        if body.after_sequence < 0 {
            return Err(ValidationError::new("after_sequence", "must not be negative").into());
        }
        if body.step_index.is_some_and(|index| index < -1) {
            return Err(ValidationError::new(
                "step_index",
                "must be -1 (agent messages) or a step index",
            )
            .into());
        }
        let scope = self
            .context
            .authorize(&principal, body.customer_id, Action::ReadPipelines)
            .await?;
        let page = self
            .context
            .store
            .execution_logs(
                &scope,
                execution_id,
                body.step_index,
                body.after_sequence,
                page,
            )
            .await?;
        Ok(Response::new(pb::GetExecutionLogsResponse {
            chunks: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id, execution_id = request.get_ref().execution_id))]
    async fn watch_execution(
        &self,
        request: Request<pb::WatchExecutionRequest>,
    ) -> Result<Response<Self::WatchExecutionStream>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let body = request.get_ref();
        let execution_id = ExecutionId::parse(body.execution_id, "execution_id")?;
        if body.after_sequence < 0 {
            return Err(ValidationError::new("after_sequence", "must not be negative").into());
        }
        let after_sequence = body.after_sequence;
        let scope = self
            .context
            .authorize(&principal, body.customer_id, Action::ReadPipelines)
            .await?;
        // Subscribe before the first read, so no change between the two is missed.
        let signal = self.operations.signals().subscribe(execution_id);
        let execution = self
            .context
            .store
            .get_execution(&scope, execution_id)
            .await?;
        let ticket = self.context.open_watch(&scope).await?;
        let reads = self.context.shared_reads.clone();
        let access = AccessCheck::new(
            &self.context,
            request.metadata(),
            body.customer_id,
            Action::ReadPipelines,
        );
        Ok(Response::new(spawn_watch(
            64,
            ticket,
            access,
            move |watcher| {
                execution_watch::watch(reads, scope, execution, after_sequence, signal, watcher)
            },
        )))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id, execution_id = request.get_ref().execution_id))]
    async fn list_artifacts(
        &self,
        request: Request<pb::ListArtifactsRequest>,
    ) -> Result<Response<pb::ListArtifactsResponse>, Status> {
        let execution_id = ExecutionId::parse(request.get_ref().execution_id, "execution_id");
        let scope = self
            .scope(
                &request,
                request.get_ref().customer_id,
                Action::ReadPipelines,
            )
            .await?;
        let artifacts = self
            .context
            .store
            .list_artifacts(&scope, execution_id?)
            .await?;
        Ok(Response::new(pb::ListArtifactsResponse {
            artifacts: artifacts.into_iter().map(Into::into).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id, artifact_id = request.get_ref().artifact_id))]
    async fn download_artifact(
        &self,
        request: Request<pb::DownloadArtifactRequest>,
    ) -> Result<Response<Self::DownloadArtifactStream>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let artifact_id = request.get_ref().artifact_id;
        if artifact_id <= 0 {
            return Err(ValidationError::new("artifact_id", "must be a positive id").into());
        }
        let scope = self
            .context
            .authorize(
                &principal,
                request.get_ref().customer_id,
                Action::ReadPipelines,
            )
            .await?;
        let artifact = self.context.store.get_artifact(&scope, artifact_id).await?;
        let file = self
            .artifacts
            .open(&artifact.storage_key)
            .await
            .map_err(|error| status::artifact_missing(artifact.id, error))?;
        // The first message describes the artifact (alone, for an empty one).
        let mut header = Some(pb::Artifact::from(artifact));
        let messages = super::artifact_stream::chunks(file, DOWNLOAD_CHUNK, move |data| {
            data.map(|data| pb::DownloadArtifactResponse {
                artifact: header.take(),
                data,
            })
            .or_else(|| {
                header.take().map(|artifact| pb::DownloadArtifactResponse {
                    artifact: Some(artifact),
                    data: Vec::new(),
                })
            })
        });
        Ok(Response::new(Box::pin(messages)))
    }
}
