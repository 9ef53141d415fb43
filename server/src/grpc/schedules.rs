//! PipelineService's schedule RPCs: the same roles as changing the pipeline (reading for any
//! member), the cron expression and zone checked before anything is written.

use cygnet_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::pipelines::PipelineApi;
use crate::audit;
use crate::auth::Action;
use crate::domain::PageRequest;
use crate::domain::ids::parse_optional;
use crate::domain::schedule::{CronSchedule, NewSchedule, Schedule};
use crate::domain::{PipelineId, ScheduleId};
use crate::store::SchedulePatch;
use crate::wire::common::timestamp;
use crate::wire::pipeline::run_parameters;

impl From<Schedule> for pb::Schedule {
    fn from(schedule: Schedule) -> Self {
        pb::Schedule {
            id: schedule.id.get(),
            customer_id: schedule.customer_id.get(),
            pipeline_id: schedule.pipeline_id.get(),
            cron: schedule.cron,
            time_zone: schedule.time_zone,
            parameters: schedule.parameters.into_iter().collect(),
            enabled: schedule.enabled,
            next_run_at: schedule.next_run_at.and_then(timestamp),
            last_run_at: schedule.last_run_at.and_then(timestamp),
            last_execution_id: schedule.last_execution_id.unwrap_or(0),
            last_error: schedule.last_error,
            created_by: schedule.created_by.get(),
            created_at: timestamp(schedule.created_at),
        }
    }
}

impl PipelineApi {
    /// Refuses parameters named like a secret variable of the pipeline, as RunPipeline does: a
    /// schedule's parameter never stands in for a secret.
    pub(super) async fn check_not_secrets(
        &self,
        scope: &crate::auth::TenantScope,
        pipeline_id: PipelineId,
        parameters: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), Status> {
        let secret_keys = self
            .context
            .store
            .secret_keys_of_pipeline(scope, pipeline_id)
            .await?;
        crate::domain::pipeline::check_not_secrets(parameters, &secret_keys)?;
        Ok(())
    }

    pub(super) async fn create_schedule_rpc(
        &self,
        request: Request<pb::CreateScheduleRequest>,
    ) -> Result<Response<pb::CreateScheduleResponse>, Status> {
        let body = request.get_ref();
        audit::note_resource("pipeline", body.pipeline_id);
        let pipeline_id = PipelineId::parse(body.pipeline_id, "pipeline_id");
        let scope = self
            .scope(&request, body.customer_id, Action::ManagePipelines)
            .await?;
        let parsed = CronSchedule::parse(&body.cron, &body.time_zone);
        let pipeline_id = pipeline_id?;
        let parameters = run_parameters(&body.parameters);
        self.check_not_secrets(&scope, pipeline_id, &parameters)
            .await?;
        let new = NewSchedule {
            pipeline_id,
            cron: body.cron.trim().to_owned(),
            time_zone: body.time_zone.trim().to_owned(),
            parameters,
            enabled: body.enabled.unwrap_or(true),
            parsed: parsed?,
        };
        let schedule = self
            .context
            .store
            .create_schedule(&scope, new, scope.actor())
            .await?;
        audit::note_resource("schedule", schedule.id.get());
        Ok(Response::new(pb::CreateScheduleResponse {
            schedule: Some(schedule.into()),
        }))
    }

    pub(super) async fn list_schedules_rpc(
        &self,
        request: Request<pb::ListSchedulesRequest>,
    ) -> Result<Response<pb::ListSchedulesResponse>, Status> {
        let body = request.get_ref();
        let page = PageRequest::parse(body.page_size, &body.page_token);
        let pipeline_id = parse_optional(body.pipeline_id, "pipeline_id", PipelineId::parse);
        let scope = self
            .scope(&request, body.customer_id, Action::ReadPipelines)
            .await?;
        let page = self
            .context
            .store
            .list_schedules(&scope, pipeline_id?, page?)
            .await?;
        Ok(Response::new(pb::ListSchedulesResponse {
            schedules: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    pub(super) async fn update_schedule_rpc(
        &self,
        request: Request<pb::UpdateScheduleRequest>,
    ) -> Result<Response<pb::UpdateScheduleResponse>, Status> {
        let body = request.get_ref();
        audit::note_resource("schedule", body.schedule_id);
        let schedule_id = ScheduleId::parse(body.schedule_id, "schedule_id");
        let scope = self
            .scope(&request, body.customer_id, Action::ManagePipelines)
            .await?;
        // A new expression or zone is checked here, naming its field; the store checks the
        // two together again when it reads the half that is not changing.
        let cron = body
            .cron
            .as_ref()
            .map(|cron| CronSchedule::parse(cron, ""))
            .transpose();
        let zone = body
            .time_zone
            .as_ref()
            .map(|zone| CronSchedule::parse("0 0 * * *", zone))
            .transpose();
        let schedule_id = schedule_id?;
        cron?;
        zone?;
        let parameters = body
            .set_parameters
            .then(|| run_parameters(&body.parameters));
        if let Some(parameters) = &parameters {
            let pipeline_id = self
                .context
                .store
                .schedule_pipeline(&scope, schedule_id)
                .await?;
            self.check_not_secrets(&scope, pipeline_id, parameters)
                .await?;
        }
        let patch = SchedulePatch {
            cron: body.cron.as_ref().map(|cron| cron.trim().to_owned()),
            time_zone: body.time_zone.as_ref().map(|zone| zone.trim().to_owned()),
            parameters,
            enabled: body.enabled,
        };
        let schedule = self
            .context
            .store
            .update_schedule(&scope, schedule_id, patch)
            .await?;
        Ok(Response::new(pb::UpdateScheduleResponse {
            schedule: Some(schedule.into()),
        }))
    }

    pub(super) async fn delete_schedule_rpc(
        &self,
        request: Request<pb::DeleteScheduleRequest>,
    ) -> Result<Response<pb::DeleteScheduleResponse>, Status> {
        let body = request.get_ref();
        audit::note_resource("schedule", body.schedule_id);
        let schedule_id = ScheduleId::parse(body.schedule_id, "schedule_id");
        let scope = self
            .scope(&request, body.customer_id, Action::ManagePipelines)
            .await?;
        self.context
            .store
            .delete_schedule(&scope, schedule_id?)
            .await?;
        Ok(Response::new(pb::DeleteScheduleResponse {}))
    }
}
