//! `cygnet.v1.CustomerService`.

use std::collections::HashSet;

use cygnet_proto::v1::{self as pb, customer_service_server::CustomerService};
use tokio::sync::broadcast;
use tonic::{Request, Response, Status};

use super::ApiContext;
use super::watch::{AccessCheck, WatchStream, spawn_watch};
use crate::activity_feed::ActivityFeed;
use crate::audit;
use crate::auth::Action;
use crate::domain::ids::parse_optional;
use crate::domain::validate::{
    json_object, optional_email, optional_phone, optional_text, optional_url, required_line, slug,
};
use crate::domain::{
    CustomerId, CustomerPatch, InvitationId, NewCustomer, PageRequest, UserId, ValidationError,
};
use crate::store::{AuditEntry, AuditFilter, CustomerStats, now};
use crate::wire::common as convert;

/// Handler of `CustomerService`.
#[derive(Clone)]
pub struct CustomerApi {
    pub(super) context: ApiContext,
    feed: ActivityFeed,
}

impl CustomerApi {
    pub fn new(context: ApiContext, feed: ActivityFeed) -> Self {
        Self { context, feed }
    }
}

pub type WatchActivityStream = WatchStream<pb::WatchActivityResponse>;

/// Most events replayed at the start of a watch (or after falling behind).
const REPLAY_LIMIT: u64 = 1000;

impl TryFrom<pb::CreateCustomerRequest> for NewCustomer {
    type Error = ValidationError;

    fn try_from(request: pb::CreateCustomerRequest) -> Result<Self, ValidationError> {
        Ok(NewCustomer {
            name: slug("name", &request.name)?,
            display_name: required_line("display_name", &request.display_name, 200)?,
            description: optional_text("description", &request.description, 2000)?,
            logo_url: optional_url("logo_url", &request.logo_url)?,
            contact_email: optional_email("contact_email", &request.contact_email)?,
            contact_phone: optional_phone("contact_phone", &request.contact_phone)?,
            address: optional_text("address", &request.address, 500)?,
            settings: json_object("settings", &request.settings)?,
        })
    }
}

impl TryFrom<&pb::UpdateCustomerRequest> for CustomerPatch {
    type Error = ValidationError;

    fn try_from(request: &pb::UpdateCustomerRequest) -> Result<Self, ValidationError> {
        fn each<T>(
            value: &Option<String>,
            check: impl Fn(&str) -> Result<T, ValidationError>,
        ) -> Result<Option<T>, ValidationError> {
            value.as_deref().map(check).transpose()
        }
        Ok(CustomerPatch {
            display_name: each(&request.display_name, |v| {
                required_line("display_name", v, 200)
            })?,
            description: each(&request.description, |v| {
                optional_text("description", v, 2000)
            })?,
            logo_url: each(&request.logo_url, |v| optional_url("logo_url", v))?,
            contact_email: each(&request.contact_email, |v| {
                optional_email("contact_email", v)
            })?,
            contact_phone: each(&request.contact_phone, |v| {
                optional_phone("contact_phone", v)
            })?,
            address: each(&request.address, |v| optional_text("address", v, 500))?,
            settings: each(&request.settings, |v| json_object("settings", v))?,
        })
    }
}

#[tonic::async_trait]
impl CustomerService for CustomerApi {
    #[tracing::instrument(skip_all)]
    async fn create_customer(
        &self,
        request: Request<pb::CreateCustomerRequest>,
    ) -> Result<Response<pb::CreateCustomerResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let new = NewCustomer::try_from(request.into_inner())?;
        let admin = principal.require_platform_admin("create customers")?;
        let customer = self.context.store.create_customer(&admin, new).await?;
        audit::note_customer(customer.id);
        audit::note_resource("customer", customer.id.get());
        tracing::info!(customer_id = customer.id.get(), name = %customer.name, "customer created");
        Ok(Response::new(pb::CreateCustomerResponse {
            customer: Some(customer.into()),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn get_customer(
        &self,
        request: Request<pb::GetCustomerRequest>,
    ) -> Result<Response<pb::GetCustomerResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let customer_id = CustomerId::parse(request.get_ref().customer_id, "customer_id")?;
        let scope = self
            .context
            .authorizer
            .scope(&principal, customer_id, Action::ReadCustomer)
            .await?;
        let customer = self.context.store.get_customer(&scope).await?;
        Ok(Response::new(pb::GetCustomerResponse {
            customer: Some(customer.into()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_customers(
        &self,
        request: Request<pb::ListCustomersRequest>,
    ) -> Result<Response<pb::ListCustomersResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let request = request.into_inner();
        let page = PageRequest::parse(request.page_size, &request.page_token)?;
        let page = if principal.is_superuser {
            let admin = principal.require_platform_admin("list every customer")?;
            self.context
                .store
                .list_all_customers(&admin, page, request.active_only)
                .await?
        } else {
            self.context
                .store
                .list_member_customers(principal.user_id, page, request.active_only)
                .await?
        };
        Ok(Response::new(pb::ListCustomersResponse {
            customers: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn update_customer(
        &self,
        request: Request<pb::UpdateCustomerRequest>,
    ) -> Result<Response<pb::UpdateCustomerResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let customer_id = CustomerId::parse(request.get_ref().customer_id, "customer_id")?;
        audit::note_resource("customer", customer_id.get());
        let patch = CustomerPatch::try_from(request.get_ref())?;
        let scope = self
            .context
            .authorizer
            .scope(&principal, customer_id, Action::UpdateCustomer)
            .await?;
        let customer = self.context.store.update_customer(&scope, patch).await?;
        Ok(Response::new(pb::UpdateCustomerResponse {
            customer: Some(customer.into()),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn deactivate_customer(
        &self,
        request: Request<pb::DeactivateCustomerRequest>,
    ) -> Result<Response<pb::DeactivateCustomerResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let customer_id = CustomerId::parse(request.get_ref().customer_id, "customer_id")?;
        audit::note_resource("customer", customer_id.get());
        let scope = self
            .context
            .authorizer
            .scope(&principal, customer_id, Action::ChangeCustomerStatus)
            .await?;
        let customer = self
            .context
            .store
            .set_customer_active(&scope, false)
            .await?;
        tracing::info!("customer deactivated");
        Ok(Response::new(pb::DeactivateCustomerResponse {
            customer: Some(customer.into()),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn reactivate_customer(
        &self,
        request: Request<pb::ReactivateCustomerRequest>,
    ) -> Result<Response<pb::ReactivateCustomerResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let customer_id = CustomerId::parse(request.get_ref().customer_id, "customer_id")?;
        audit::note_resource("customer", customer_id.get());
        let scope = self
            .context
            .authorizer
            .scope(&principal, customer_id, Action::ChangeCustomerStatus)
            .await?;
        let customer = self.context.store.set_customer_active(&scope, true).await?;
        tracing::info!("customer reactivated");
        Ok(Response::new(pb::ReactivateCustomerResponse {
            customer: Some(customer.into()),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id, user_id = request.get_ref().user_id))]
    async fn add_member(
        &self,
        request: Request<pb::AddMemberRequest>,
    ) -> Result<Response<pb::AddMemberResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let request_body = request.get_ref();
        let customer_id = CustomerId::parse(request_body.customer_id, "customer_id")?;
        let user_id = UserId::parse(request_body.user_id, "user_id")?;
        audit::note_resource("user", user_id.get());
        let role = convert::parse_role("role", request_body.role)?;
        let scope = self
            .context
            .authorizer
            .scope(&principal, customer_id, Action::ManageMembers)
            .await?;
        // A customer admin may not place a customer in an arbitrary user's switcher (or learn
        // who the user is): they invite, and the user accepts.
        principal.require_platform_admin(
            "add members directly; customer admins invite them (InviteMember)",
        )?;
        let member = self.context.store.add_member(&scope, user_id, role).await?;
        Ok(Response::new(pb::AddMemberResponse {
            member: Some(convert::member(member)),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn invite_member(
        &self,
        request: Request<pb::InviteMemberRequest>,
    ) -> Result<Response<pb::InviteMemberResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let body = request.get_ref();
        let username = crate::domain::validate::username("username", &body.username)?;
        let role = convert::parse_role("role", body.role)?;
        let scope = self
            .context
            .authorize(&principal, body.customer_id, Action::ManageMembers)
            .await?;
        let invitation = self
            .context
            .store
            .invite_member(&scope, &username, role)
            .await?;
        audit::note_resource("invitation", invitation.id.get());
        Ok(Response::new(pb::InviteMemberResponse {
            invitation: Some(invitation.into()),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn list_invitations(
        &self,
        request: Request<pb::ListInvitationsRequest>,
    ) -> Result<Response<pb::ListInvitationsResponse>, Status> {
        let scope = self
            .context
            .scope(
                request.metadata(),
                request.get_ref().customer_id,
                Action::ReadInvitations,
            )
            .await?;
        let invitations = self.context.store.list_invitations(&scope).await?;
        Ok(Response::new(pb::ListInvitationsResponse {
            invitations: invitations.into_iter().map(Into::into).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn revoke_invitation(
        &self,
        request: Request<pb::RevokeInvitationRequest>,
    ) -> Result<Response<pb::RevokeInvitationResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let body = request.get_ref();
        let invitation_id = InvitationId::parse(body.invitation_id, "invitation_id")?;
        audit::note_resource("invitation", invitation_id.get());
        let scope = self
            .context
            .authorize(&principal, body.customer_id, Action::RemoveMember)
            .await?;
        self.context
            .store
            .revoke_invitation(&scope, invitation_id)
            .await?;
        Ok(Response::new(pb::RevokeInvitationResponse {}))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id, user_id = request.get_ref().user_id))]
    async fn update_member(
        &self,
        request: Request<pb::UpdateMemberRequest>,
    ) -> Result<Response<pb::UpdateMemberResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let request_body = request.get_ref();
        let customer_id = CustomerId::parse(request_body.customer_id, "customer_id")?;
        let user_id = UserId::parse(request_body.user_id, "user_id")?;
        audit::note_resource("user", user_id.get());
        let role = convert::parse_role("role", request_body.role)?;
        let scope = self
            .context
            .authorizer
            .scope(&principal, customer_id, Action::ManageMembers)
            .await?;
        let member = self
            .context
            .store
            .update_member(&scope, user_id, role)
            .await?;
        Ok(Response::new(pb::UpdateMemberResponse {
            member: Some(convert::member(member)),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id, user_id = request.get_ref().user_id))]
    async fn remove_member(
        &self,
        request: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::RemoveMemberResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let customer_id = CustomerId::parse(request.get_ref().customer_id, "customer_id")?;
        let user_id = UserId::parse(request.get_ref().user_id, "user_id")?;
        audit::note_resource("user", user_id.get());
        let scope = self
            .context
            .authorizer
            .scope(&principal, customer_id, Action::RemoveMember)
            .await?;
        self.context.store.remove_member(&scope, user_id).await?;
        Ok(Response::new(pb::RemoveMemberResponse {}))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let request_body = request.get_ref();
        let customer_id = CustomerId::parse(request_body.customer_id, "customer_id")?;
        let page = PageRequest::parse(request_body.page_size, &request_body.page_token)?;
        let scope = self
            .context
            .authorizer
            .scope(&principal, customer_id, Action::ReadMembers)
            .await?;
        let page = self.context.store.list_members(&scope, page).await?;
        Ok(Response::new(pb::ListMembersResponse {
            members: page.items.into_iter().map(convert::member).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn list_activity(
        &self,
        request: Request<pb::ListActivityRequest>,
    ) -> Result<Response<pb::ListActivityResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let request_body = request.get_ref();
        let customer_id = CustomerId::parse(request_body.customer_id, "customer_id")?;
        let page = PageRequest::parse(request_body.page_size, &request_body.page_token)?;
        let scope = self
            .context
            .authorizer
            .scope(&principal, customer_id, Action::ReadActivity)
            .await?;
        let page = self.context.store.list_activity(&scope, page).await?;
        Ok(Response::new(pb::ListActivityResponse {
            events: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn get_customer_quotas(
        &self,
        request: Request<pb::GetCustomerQuotasRequest>,
    ) -> Result<Response<pb::GetCustomerQuotasResponse>, Status> {
        super::quotas::get_customer_quotas(self, request).await
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn set_customer_quotas(
        &self,
        request: Request<pb::SetCustomerQuotasRequest>,
    ) -> Result<Response<pb::SetCustomerQuotasResponse>, Status> {
        super::quotas::set_customer_quotas(self, request).await
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn get_customer_usage(
        &self,
        request: Request<pb::GetCustomerUsageRequest>,
    ) -> Result<Response<pb::GetCustomerUsageResponse>, Status> {
        super::quotas::get_customer_usage(self, request).await
    }

    type WatchActivityStream = WatchActivityStream;

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn watch_activity(
        &self,
        request: Request<pb::WatchActivityRequest>,
    ) -> Result<Response<WatchActivityStream>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let body = request.get_ref();
        let customer_id = body.customer_id;
        let after_id = body.after_id;
        if after_id < 0 {
            return Err(ValidationError::new("after_id", "must not be negative").into());
        }
        let scope = self
            .context
            .authorize(&principal, customer_id, Action::ReadActivity)
            .await?;
        // Subscribe before reading the replay, so nothing falls between the two.
        let mut events = self.feed.subscribe();
        // Events up to `floor` came before the watch: replayed from the database when asked
        // for, never from the feed (which may still be catching up on them).
        let (floor, replay) = if after_id > 0 {
            let replay = self
                .context
                .store
                .activity_since(&scope, after_id, REPLAY_LIMIT)
                .await?;
            (after_id, replay)
        } else {
            (
                self.context.store.latest_activity_id_of(&scope).await?,
                Vec::new(),
            )
        };
        let ticket = self.context.open_watch(&scope).await?;
        let context = self.context.clone();
        // Access taken away (token revoked, membership removed) ends the stream.
        let access = AccessCheck::new(
            &self.context,
            request.metadata(),
            customer_id,
            Action::ReadActivity,
        );
        let stream = spawn_watch(64, ticket, access, move |watcher| async move {
            let send = |event: crate::domain::ActivityEvent| {
                watcher.send(pb::WatchActivityResponse {
                    event: Some(event.into()),
                })
            };
            let mut last = floor;
            let mut replayed = HashSet::new();
            for event in replay {
                last = last.max(event.id);
                replayed.insert(event.id);
                if !send(event).await {
                    return;
                }
            }
            loop {
                let received = tokio::select! {
                    _ = watcher.closed() => return,
                    received = events.recv() => received,
                };
                let missed = match received {
                    Ok(event) => {
                        if event.customer_id != scope.customer_id()
                            || event.id <= floor
                            || replayed.contains(&event.id)
                        {
                            continue;
                        }
                        vec![(*event).clone()]
                    }
                    // Fell behind the feed: read what was missed from the database.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        match context
                            .store
                            .activity_since(&scope, last, REPLAY_LIMIT)
                            .await
                        {
                            Ok(events) => events,
                            Err(error) => return watcher.fail(error).await,
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                for event in missed {
                    last = last.max(event.id);
                    if !send(event).await {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(stream))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn get_customer_stats(
        &self,
        request: Request<pb::GetCustomerStatsRequest>,
    ) -> Result<Response<pb::GetCustomerStatsResponse>, Status> {
        let scope = self
            .context
            .scope(
                request.metadata(),
                request.get_ref().customer_id,
                Action::ReadCustomer,
            )
            .await?;
        let offline_after = chrono::Duration::from_std(self.context.agent_settings.offline_after())
            .unwrap_or(chrono::Duration::seconds(30));
        let stats = self
            .context
            .store
            .customer_stats(&scope, now() - offline_after)
            .await?;
        Ok(Response::new(pb::GetCustomerStatsResponse {
            stats: Some(stats_to_pb(stats)),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn list_audit_log(
        &self,
        request: Request<pb::ListAuditLogRequest>,
    ) -> Result<Response<pb::ListAuditLogResponse>, Status> {
        let body = request.get_ref();
        let page = PageRequest::parse(body.page_size, &body.page_token);
        let actor = parse_optional(body.actor_user_id, "actor_user_id", UserId::parse);
        let filter = if body.customer_id == 0 {
            let principal = self
                .context
                .authenticator
                .authenticate(request.metadata())
                .await?;
            principal.require_platform_admin("read the audit log of every customer")?;
            AuditFilter::All
        } else {
            let scope = self
                .context
                .scope(request.metadata(), body.customer_id, Action::ReadAuditLog)
                .await?;
            AuditFilter::Customer(scope.customer_id())
        };
        let page = self.context.store.list_audit(filter, actor?, page?).await?;
        Ok(Response::new(pb::ListAuditLogResponse {
            entries: page.items.into_iter().map(audit_to_pb).collect(),
            next_page_token: page.next_page_token,
        }))
    }
}

fn stats_to_pb(stats: CustomerStats) -> pb::CustomerStats {
    pb::CustomerStats {
        customer_id: stats.customer_id.get(),
        agents_total: stats.agents_total,
        agents_online: stats.agents_online,
        pipelines_total: stats.pipelines_total,
        pipelines_succeeding: stats.pipelines_succeeding,
        releases_total: stats.releases_total,
        releases_active: stats.releases_active,
        releases_in_progress: stats.releases_in_progress,
        services_total: stats.services_total,
        services_healthy: stats.services_healthy,
        services_warning: stats.services_warning,
        services_down: stats.services_down,
        users_total: stats.users_total,
        users_active: stats.users_active,
        executions_total: stats.executions_total,
        executions_succeeded: stats.executions_succeeded,
        executions_failed: stats.executions_failed,
        success_rate_percent: stats.success_rate_percent,
        computed_at: convert::timestamp(stats.computed_at),
    }
}

fn audit_to_pb(entry: AuditEntry) -> pb::AuditEntry {
    pb::AuditEntry {
        id: entry.id,
        customer_id: entry.customer_id.map_or(0, CustomerId::get),
        actor_user_id: entry.actor_user_id.map_or(0, UserId::get),
        actor_username: entry.actor_username,
        method: entry.method,
        resource_type: entry.resource_type,
        resource_id: entry.resource_id.unwrap_or(0),
        peer_address: entry.peer_address,
        code: entry.code,
        created_at: convert::timestamp(entry.created_at),
    }
}
