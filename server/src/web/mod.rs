//! The web dashboard: server-rendered pages over the same gRPC services, in-process.
//!
//! Every page and form calls the service implementations the gRPC server runs, with the
//! session's token as the bearer, so authentication, tenant scoping, roles and validation are
//! the API's own; writes leave the same audit entries (`audit::audited`) and run to completion
//! like RPCs do. Live parts are Server-Sent Events fed by the Watch RPCs.

mod chart;
mod database;
mod error;
mod headers;
mod hooks;
mod live;
mod origin;
mod pages;
mod presession;
mod serve;
mod session;
mod view;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::grpc::{
    AgentApi, CustomerApi, MonitorApi, PipelineApi, ReleaseApi, UserApi, VariableApi,
};
use crate::store::Store;

pub use serve::{serve, tls_acceptor};

/// What the web handlers share; cheap to clone.
#[derive(Clone)]
pub struct Web(Arc<WebInner>);

pub struct WebInner {
    pub customers: CustomerApi,
    pub users: UserApi,
    pub agents: AgentApi,
    pub pipelines: PipelineApi,
    pub releases: ReleaseApi,
    pub monitors: MonitorApi,
    pub variables: VariableApi,
    pub authenticator: Authenticator,
    pub store: Store,
    /// Writes run as tasks here, so shutdown waits for them (see `run_to_completion`).
    pub tasks: TaskTracker,
    /// Cookies get `Secure` (the dashboard is served over TLS).
    pub secure_cookies: bool,
    /// Cancelled at shutdown: live streams end.
    pub stopping: CancellationToken,
    /// The gRPC port agents connect to, and whether it speaks TLS: a new registration token's
    /// `appsettings.json` names it (on the host the browser addressed).
    pub grpc_port: u16,
    pub grpc_tls: bool,
    /// Receives webhook deliveries (`/hooks/<token>`).
    pub hooks: crate::webhooks::Intake,
}

impl Web {
    pub fn new(inner: WebInner) -> Self {
        Web(Arc::new(inner))
    }

    /// Every route of the dashboard; every answer carries the security headers (`headers`),
    /// writes from another origin are refused before any handler runs (`origin`), and pages
    /// are answered 503 at once while the database is unreachable (`database`). Webhook
    /// deliveries (`/hooks/<token>`) come from other sites by design: they skip the origin
    /// rule and prove themselves by their signatures.
    pub fn router(self) -> Router {
        let hooks = Router::new()
            .route("/hooks/{token}", post(hooks::deliver))
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                database::refuse_while_unreachable,
            ))
            .layer(axum::middleware::map_response(
                headers::add_security_headers,
            ))
            .with_state(self.clone());
        Router::new()
            .route("/", get(pages::index))
            .route("/signin", get(session::sign_in_page).post(session::sign_in))
            .route("/signout", post(session::sign_out))
            .route("/switch", get(pages::switch))
            .route("/static/app.css", get(pages::stylesheet))
            .route("/static/app.js", get(pages::script))
            .route(
                "/admin/customers",
                get(pages::customers).post(pages::create_customer),
            )
            .route(
                "/admin/customers/{customer}/{action}",
                post(pages::set_customer_active),
            )
            .route("/admin/users", get(pages::users).post(pages::create_user))
            .route("/admin/users/{user}/token", post(pages::create_user_token))
            .route(
                "/invitations/{invitation}/accept",
                post(pages::accept_invitation),
            )
            .route("/c/{customer}", get(pages::dashboard))
            .route("/c/{customer}/activity/live", get(live::activity))
            .route("/c/{customer}/cards", get(pages::cards_now))
            .route("/c/{customer}/agents", get(pages::agents))
            .route("/c/{customer}/agents/{agent}", get(pages::agent))
            .route(
                "/c/{customer}/agents/tokens",
                get(pages::tokens).post(pages::create_token),
            )
            .route(
                "/c/{customer}/agents/tokens/{token}/revoke",
                post(pages::revoke_token),
            )
            .route("/c/{customer}/pipelines", get(pages::pipelines))
            .route(
                "/c/{customer}/pipelines/new",
                get(pages::new_pipeline).post(pages::create_pipeline),
            )
            .route("/c/{customer}/pipelines/{pipeline}", get(pages::pipeline))
            .route(
                "/c/{customer}/pipelines/{pipeline}/edit",
                get(pages::edit_pipeline).post(pages::update_pipeline),
            )
            .route(
                "/c/{customer}/pipelines/{pipeline}/delete",
                post(pages::delete_pipeline),
            )
            .route(
                "/c/{customer}/pipelines/{pipeline}/schedules",
                post(pages::create_schedule),
            )
            .route(
                "/c/{customer}/schedules/{schedule}/toggle",
                post(pages::toggle_schedule),
            )
            .route(
                "/c/{customer}/schedules/{schedule}/delete",
                post(pages::delete_schedule),
            )
            .route(
                "/c/{customer}/pipelines/{pipeline}/webhooks",
                post(pages::create_webhook),
            )
            .route("/c/{customer}/webhooks/{webhook}", get(pages::webhook))
            .route(
                "/c/{customer}/webhooks/{webhook}/toggle",
                post(pages::toggle_webhook),
            )
            .route(
                "/c/{customer}/webhooks/{webhook}/delete",
                post(pages::delete_webhook),
            )
            .route(
                "/c/{customer}/webhooks/{webhook}/secret",
                post(pages::rotate_webhook_secret),
            )
            .route(
                "/c/{customer}/pipelines/{pipeline}/run",
                post(pages::run_pipeline),
            )
            .route(
                "/c/{customer}/executions/{execution}",
                get(pages::execution),
            )
            .route(
                "/c/{customer}/executions/{execution}/live",
                get(live::execution),
            )
            .route(
                "/c/{customer}/executions/{execution}/cancel",
                post(pages::cancel_execution),
            )
            .route(
                "/c/{customer}/artifacts/{artifact}",
                get(pages::download_artifact),
            )
            .route(
                "/c/{customer}/releases",
                get(pages::releases).post(pages::create_release),
            )
            .route(
                "/c/{customer}/releases/{release}/deploy",
                post(pages::deploy_release),
            )
            .route(
                "/c/{customer}/deployments/{deployment}",
                get(pages::deployment),
            )
            .route(
                "/c/{customer}/environments",
                post(pages::create_environment),
            )
            .route(
                "/c/{customer}/stages/{stage}/approve",
                post(pages::approve_stage),
            )
            .route(
                "/c/{customer}/stages/{stage}/reject",
                post(pages::reject_stage),
            )
            .route(
                "/c/{customer}/monitors",
                get(pages::monitors).post(pages::create_monitor),
            )
            .route("/c/{customer}/members", get(pages::members))
            .route("/c/{customer}/members/invite", post(pages::invite_member))
            .route(
                "/c/{customer}/members/{user}/{action}",
                post(pages::change_member),
            )
            .route(
                "/c/{customer}/variables",
                get(pages::variables).post(pages::create_group),
            )
            .route("/c/{customer}/variables/{group}", post(pages::set_variable))
            .route(
                "/c/{customer}/variables/{group}/delete",
                post(pages::delete_variable_group),
            )
            .route(
                "/c/{customer}/variables/{group}/unset",
                post(pages::delete_variable),
            )
            .route(
                "/c/{customer}/monitors/{monitor}/delete",
                post(pages::delete_monitor),
            )
            .route("/c/{customer}/usage", get(pages::usage))
            .route("/c/{customer}/quotas", post(pages::set_quotas))
            .route("/c/{customer}/{export}", get(pages::usage_export))
            .fallback(pages::not_found)
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                database::refuse_while_unreachable,
            ))
            .layer(axum::middleware::from_fn(origin::refuse_foreign_writes))
            .layer(axum::middleware::map_response(
                headers::add_security_headers,
            ))
            .with_state(self)
            .merge(hooks)
    }
}

impl std::ops::Deref for Web {
    type Target = WebInner;

    fn deref(&self) -> &WebInner {
        &self.0
    }
}
