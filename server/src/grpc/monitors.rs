//! `cygnet.v1.MonitorService`.

use cygnet_proto::v1::{self as pb, monitor_service_server::MonitorService};
use tonic::{Request, Response, Status};

use super::ApiContext;
use crate::audit;
use crate::auth::Action;
use crate::domain::monitor::{MonitorPatch, MonitorSettings};
use crate::domain::{MonitorId, PageRequest};
use crate::monitors::MonitorScheduler;
use crate::store::now;
use crate::wire::common::time_range;
use crate::wire::monitor::status_filter;

/// Handler of `MonitorService`.
#[derive(Clone)]
pub struct MonitorApi {
    context: ApiContext,
    scheduler: MonitorScheduler,
}

impl MonitorApi {
    pub fn new(context: ApiContext, scheduler: MonitorScheduler) -> Self {
        Self { context, scheduler }
    }
}

#[tonic::async_trait]
impl MonitorService for MonitorApi {
    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn create_monitor(
        &self,
        request: Request<pb::CreateMonitorRequest>,
    ) -> Result<Response<pb::CreateMonitorResponse>, Status> {
        let settings = MonitorSettings::try_from(request.get_ref());
        let scope = self
            .context
            .scope(
                request.metadata(),
                request.get_ref().customer_id,
                Action::ManageMonitors,
            )
            .await?;
        let monitor = self.context.store.create_monitor(&scope, settings?).await?;
        audit::note_resource("monitor", monitor.id.get());
        tracing::info!(monitor_id = monitor.id.get(), name = %monitor.settings.name, "monitor created");
        self.scheduler.customer_changed(scope.customer_id());
        Ok(Response::new(pb::CreateMonitorResponse {
            monitor: Some(monitor.into()),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn get_monitor(
        &self,
        request: Request<pb::GetMonitorRequest>,
    ) -> Result<Response<pb::GetMonitorResponse>, Status> {
        let body = request.get_ref();
        let monitor_id = MonitorId::parse(body.monitor_id, "monitor_id");
        let scope = self
            .context
            .scope(request.metadata(), body.customer_id, Action::ReadMonitors)
            .await?;
        let monitor = self.context.store.get_monitor(&scope, monitor_id?).await?;
        Ok(Response::new(pb::GetMonitorResponse {
            monitor: Some(monitor.into()),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn list_monitors(
        &self,
        request: Request<pb::ListMonitorsRequest>,
    ) -> Result<Response<pb::ListMonitorsResponse>, Status> {
        let body = request.get_ref();
        let page = PageRequest::parse(body.page_size, &body.page_token);
        let status = status_filter(body.status);
        let scope = self
            .context
            .scope(request.metadata(), body.customer_id, Action::ReadMonitors)
            .await?;
        let page = self
            .context
            .store
            .list_monitors(&scope, status?, page?)
            .await?;
        Ok(Response::new(pb::ListMonitorsResponse {
            monitors: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id, monitor_id = request.get_ref().monitor_id))]
    async fn update_monitor(
        &self,
        request: Request<pb::UpdateMonitorRequest>,
    ) -> Result<Response<pb::UpdateMonitorResponse>, Status> {
        let body = request.get_ref();
        audit::note_resource("monitor", body.monitor_id);
        let monitor_id = MonitorId::parse(body.monitor_id, "monitor_id");
        let patch = MonitorPatch::try_from(body);
        let scope = self
            .context
            .scope(request.metadata(), body.customer_id, Action::ManageMonitors)
            .await?;
        let (monitor, check_changed) = self
            .context
            .store
            .update_monitor(&scope, monitor_id?, patch?)
            .await?;
        if check_changed {
            self.scheduler.customer_changed(scope.customer_id());
        }
        Ok(Response::new(pb::UpdateMonitorResponse {
            monitor: Some(monitor.into()),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id, monitor_id = request.get_ref().monitor_id))]
    async fn delete_monitor(
        &self,
        request: Request<pb::DeleteMonitorRequest>,
    ) -> Result<Response<pb::DeleteMonitorResponse>, Status> {
        let body = request.get_ref();
        audit::note_resource("monitor", body.monitor_id);
        let monitor_id = MonitorId::parse(body.monitor_id, "monitor_id");
        let scope = self
            .context
            .scope(request.metadata(), body.customer_id, Action::DeleteMonitors)
            .await?;
        self.context
            .store
            .delete_monitor(&scope, monitor_id?)
            .await?;
        tracing::info!("monitor deleted");
        self.scheduler.customer_changed(scope.customer_id());
        Ok(Response::new(pb::DeleteMonitorResponse {}))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id, monitor_id = request.get_ref().monitor_id))]
    async fn get_monitor_history(
        &self,
        request: Request<pb::GetMonitorHistoryRequest>,
    ) -> Result<Response<pb::GetMonitorHistoryResponse>, Status> {
        let body = request.get_ref();
        let monitor_id = MonitorId::parse(body.monitor_id, "monitor_id");
        let page = PageRequest::parse(body.page_size, &body.page_token);
        // Checked after authentication, like the id and the page.
        let range = time_range(
            body.start_time.as_ref(),
            body.end_time.as_ref(),
            now(),
            chrono::Duration::hours(24),
        );
        let scope = self
            .context
            .scope(request.metadata(), body.customer_id, Action::ReadMonitors)
            .await?;
        let (start, end) = range?;
        let page = self
            .context
            .store
            .monitor_history(&scope, monitor_id?, start, end, page?)
            .await?;
        Ok(Response::new(pb::GetMonitorHistoryResponse {
            results: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        }))
    }
}
