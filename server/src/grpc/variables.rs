//! `cygnet.v1.VariableService`. Secret values go in, never out: responses carry `is_secret`
//! and an empty value.

use std::sync::Arc;

use cygnet_proto::v1::{self as pb, variable_service_server::VariableService};
use tonic::{Request, Response, Status};

use super::ApiContext;
use crate::audit;
use crate::auth::{self, Action};
use crate::domain::validate::{optional_text, required_line};
use crate::domain::variable::{
    GroupSettings, MAX_DESCRIPTION, MAX_GROUP_NAME, NewVariable, environment, key, new_variables,
};
use crate::domain::{PageRequest, VariableGroupId};
use crate::secrets::SecretBox;
use crate::wire::variable::{group_to_pb, variable_to_pb};

/// Handler of `VariableService`.
#[derive(Clone)]
pub struct VariableApi {
    context: ApiContext,
    secrets: Arc<SecretBox>,
}

impl VariableApi {
    pub fn new(context: ApiContext, secrets: Arc<SecretBox>) -> Self {
        Self { context, secrets }
    }

    /// A plain variable of a group that holds secrets, or that a pipeline getting secrets uses,
    /// is part of what that code runs with (PATH, BASH_ENV, …): only secret managers write it.
    async fn require_for_secret_code(
        &self,
        scope: &crate::auth::TenantScope,
        group_id: VariableGroupId,
    ) -> Result<(), Status> {
        if auth::require(scope, Action::ManageSecrets).is_ok()
            || !self
                .context
                .store
                .group_feeds_secrets(scope, group_id)
                .await?
        {
            return Ok(());
        }
        Err(crate::domain::Refusal::NotPermitted(format!(
            "role {} may not change variables of variable group {group_id}: it holds secrets or is used by a pipeline that gets secrets (only a role that may set secret variables may)",
            scope.role()
        ))
        .into())
    }
}

#[tonic::async_trait]
impl VariableService for VariableApi {
    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn create_variable_group(
        &self,
        request: Request<pb::CreateVariableGroupRequest>,
    ) -> Result<Response<pb::CreateVariableGroupResponse>, Status> {
        let body = request.get_ref();
        let settings = GroupSettings::parse(&body.name, &body.description);
        let variables = new_variables(body.variables.iter().map(|input| {
            (
                input.key.clone(),
                input.value.clone(),
                input.is_secret,
                input.environment_id,
                input.description.clone(),
            )
        }));
        let scope = self
            .context
            .scope(
                request.metadata(),
                body.customer_id,
                Action::ManageVariableGroups,
            )
            .await?;
        let group = self
            .context
            .store
            .create_variable_group(&scope, settings?, variables?, &self.secrets)
            .await?;
        audit::note_resource("variable_group", group.id.get());
        Ok(Response::new(pb::CreateVariableGroupResponse {
            group: Some(group_to_pb(group)),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn get_variable_group(
        &self,
        request: Request<pb::GetVariableGroupRequest>,
    ) -> Result<Response<pb::GetVariableGroupResponse>, Status> {
        let body = request.get_ref();
        let group_id = VariableGroupId::parse(body.group_id, "group_id");
        let scope = self
            .context
            .scope(request.metadata(), body.customer_id, Action::ReadVariables)
            .await?;
        let group = self
            .context
            .store
            .get_variable_group(&scope, group_id?)
            .await?;
        Ok(Response::new(pb::GetVariableGroupResponse {
            group: Some(group_to_pb(group)),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn list_variable_groups(
        &self,
        request: Request<pb::ListVariableGroupsRequest>,
    ) -> Result<Response<pb::ListVariableGroupsResponse>, Status> {
        let body = request.get_ref();
        let page = PageRequest::parse(body.page_size, &body.page_token);
        let scope = self
            .context
            .scope(request.metadata(), body.customer_id, Action::ReadVariables)
            .await?;
        let page = self
            .context
            .store
            .list_variable_groups(&scope, page?)
            .await?;
        Ok(Response::new(pb::ListVariableGroupsResponse {
            groups: page.items.into_iter().map(group_to_pb).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn update_variable_group(
        &self,
        request: Request<pb::UpdateVariableGroupRequest>,
    ) -> Result<Response<pb::UpdateVariableGroupResponse>, Status> {
        let body = request.get_ref();
        let group_id = VariableGroupId::parse(body.group_id, "group_id");
        let name = body
            .name
            .as_deref()
            .map(|name| required_line("name", name, MAX_GROUP_NAME))
            .transpose();
        let description = body
            .description
            .as_deref()
            .map(|text| optional_text("description", text, MAX_DESCRIPTION))
            .transpose();
        let scope = self
            .context
            .scope(
                request.metadata(),
                body.customer_id,
                Action::ManageVariableGroups,
            )
            .await?;
        let group_id = group_id?;
        audit::note_resource("variable_group", group_id.get());
        let group = self
            .context
            .store
            .update_variable_group(&scope, group_id, name?, description?)
            .await?;
        Ok(Response::new(pb::UpdateVariableGroupResponse {
            group: Some(group_to_pb(group)),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn delete_variable_group(
        &self,
        request: Request<pb::DeleteVariableGroupRequest>,
    ) -> Result<Response<pb::DeleteVariableGroupResponse>, Status> {
        let body = request.get_ref();
        let group_id = VariableGroupId::parse(body.group_id, "group_id");
        let scope = self
            .context
            .scope(
                request.metadata(),
                body.customer_id,
                Action::ManageVariableGroups,
            )
            .await?;
        let group_id = group_id?;
        audit::note_resource("variable_group", group_id.get());
        self.context
            .store
            .delete_variable_group(&scope, group_id)
            .await?;
        Ok(Response::new(pb::DeleteVariableGroupResponse {}))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id, key = %request.get_ref().key))]
    async fn set_variable(
        &self,
        request: Request<pb::SetVariableRequest>,
    ) -> Result<Response<pb::SetVariableResponse>, Status> {
        let body = request.get_ref();
        let group_id = VariableGroupId::parse(body.group_id, "group_id");
        let new = NewVariable::parse(
            &body.key,
            &body.value,
            body.is_secret,
            body.environment_id,
            &body.description,
        );
        let scope = self
            .context
            .scope(request.metadata(), body.customer_id, Action::SetVariables)
            .await?;
        let group_id = group_id?;
        audit::note_resource("variable_group", group_id.get());
        let new = new?;
        let existing = self
            .context
            .store
            .find_variable(&scope, group_id, &new.key, new.environment_id)
            .await?;
        if new.is_secret || existing.as_ref().is_some_and(|variable| variable.is_secret) {
            auth::require(&scope, Action::ManageSecrets)?;
        } else {
            self.require_for_secret_code(&scope, group_id).await?;
        }
        let variable = self
            .context
            .store
            .set_variable(&scope, group_id, new, &self.secrets)
            .await?;
        tracing::info!(is_secret = variable.is_secret, "variable set");
        Ok(Response::new(pb::SetVariableResponse {
            variable: Some(variable_to_pb(variable)),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id, key = %request.get_ref().key))]
    async fn delete_variable(
        &self,
        request: Request<pb::DeleteVariableRequest>,
    ) -> Result<Response<pb::DeleteVariableResponse>, Status> {
        let body = request.get_ref();
        let group_id = VariableGroupId::parse(body.group_id, "group_id");
        let parsed_key = key("key", &body.key);
        let environment_id = environment("environment_id", body.environment_id);
        let scope = self
            .context
            .scope(request.metadata(), body.customer_id, Action::SetVariables)
            .await?;
        let (group_id, parsed_key, environment_id) = (group_id?, parsed_key?, environment_id?);
        audit::note_resource("variable_group", group_id.get());
        let existing = self
            .context
            .store
            .get_variable(&scope, group_id, &parsed_key, environment_id)
            .await?;
        if existing.is_secret {
            auth::require(&scope, Action::ManageSecrets)?;
        } else {
            self.require_for_secret_code(&scope, group_id).await?;
        }
        self.context
            .store
            .delete_variable(&scope, group_id, &parsed_key, environment_id)
            .await?;
        Ok(Response::new(pb::DeleteVariableResponse {}))
    }
}
