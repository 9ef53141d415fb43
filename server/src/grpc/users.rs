//! `cygnet.v1.UserService`.

use cygnet_proto::v1::{self as pb, user_service_server::UserService};
use tonic::{Request, Response, Status};

use super::ApiContext;
use crate::audit;
use crate::auth::{Action, AuthError, Principal, token};
use crate::domain::ids::parse_optional;
use crate::domain::validate::{email, optional_line, required_line, username};
use crate::domain::{
    CustomerId, InvitationId, NewApiToken, NewUser, PageRequest, TokenId, UserId, ValidationError,
};
use crate::store::now;
use crate::wire::common as convert;

/// Handler of `UserService`.
#[derive(Clone)]
pub struct UserApi {
    context: ApiContext,
}

impl UserApi {
    pub fn new(context: ApiContext) -> Self {
        Self { context }
    }
}

impl TryFrom<pb::CreateUserRequest> for NewUser {
    type Error = ValidationError;

    fn try_from(request: pb::CreateUserRequest) -> Result<Self, ValidationError> {
        Ok(NewUser {
            username: username("username", &request.username)?,
            email: email("email", &request.email)?,
            full_name: optional_line("full_name", &request.full_name, 200)?,
            is_superuser: request.is_superuser,
        })
    }
}

impl TryFrom<&pb::CreateApiTokenRequest> for NewApiToken {
    type Error = ValidationError;

    fn try_from(request: &pb::CreateApiTokenRequest) -> Result<Self, ValidationError> {
        let expires_at = request
            .expires_at
            .as_ref()
            .map(|value| convert::parse_timestamp("expires_at", value))
            .transpose()?;
        if expires_at.is_some_and(|expires_at| expires_at <= now()) {
            return Err(ValidationError::new("expires_at", "must be in the future"));
        }
        Ok(NewApiToken {
            name: required_line("name", &request.name, 100)?,
            expires_at,
        })
    }
}

/// The user a token call is about: the caller when `user_id` is 0, anyone else only for a
/// platform administrator.
fn token_owner(principal: &Principal, requested: i64, what: &str) -> Result<UserId, Status> {
    match parse_optional(requested, "user_id", UserId::parse)? {
        None => Ok(principal.user_id),
        Some(user_id) if user_id == principal.user_id => Ok(user_id),
        Some(user_id) => {
            principal.require_platform_admin(what)?;
            Ok(user_id)
        }
    }
}

#[tonic::async_trait]
impl UserService for UserApi {
    #[tracing::instrument(skip_all)]
    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let new = NewUser::try_from(request.into_inner())?;
        let admin = principal.require_platform_admin("create users")?;
        let user = self.context.store.create_user(&admin, new).await?;
        audit::note_resource("user", user.id.get());
        tracing::info!(user_id = user.id.get(), username = %user.username, "user created");
        Ok(Response::new(pb::CreateUserResponse {
            user: Some(user.into()),
        }))
    }

    #[tracing::instrument(skip_all, fields(user_id = request.get_ref().user_id))]
    async fn get_user(
        &self,
        request: Request<pb::GetUserRequest>,
    ) -> Result<Response<pb::GetUserResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let user_id = UserId::parse(request.get_ref().user_id, "user_id")?;
        if !self
            .context
            .authorizer
            .can_see_user(&principal, user_id)
            .await?
        {
            return Err(AuthError::NotFound(format!("user {user_id} not found")).into());
        }
        let user = self.context.store.get_user(user_id).await?;
        Ok(Response::new(pb::GetUserResponse {
            user: Some(user.into()),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let request = request.into_inner();
        let page = PageRequest::parse(request.page_size, &request.page_token)?;
        let customer_id = parse_optional(request.customer_id, "customer_id", CustomerId::parse)?;
        let page = match customer_id {
            Some(customer_id) => {
                let scope = self
                    .context
                    .authorizer
                    .scope(&principal, customer_id, Action::ReadMembers)
                    .await?;
                self.context.store.list_customer_users(&scope, page).await?
            }
            None => {
                let admin = principal.require_platform_admin(
                    "list every user; members list a customer's users with customer_id",
                )?;
                self.context.store.list_all_users(&admin, page).await?
            }
        };
        Ok(Response::new(pb::ListUsersResponse {
            users: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(user_id = request.get_ref().user_id))]
    async fn deactivate_user(
        &self,
        request: Request<pb::DeactivateUserRequest>,
    ) -> Result<Response<pb::DeactivateUserResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let user_id = UserId::parse(request.get_ref().user_id, "user_id")?;
        let admin = principal.require_platform_admin("deactivate users")?;
        audit::note_resource("user", user_id.get());
        let user = self.context.store.deactivate_user(&admin, user_id).await?;
        tracing::info!("user deactivated");
        Ok(Response::new(pb::DeactivateUserResponse {
            user: Some(user.into()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_current_user(
        &self,
        request: Request<pb::GetCurrentUserRequest>,
    ) -> Result<Response<pb::GetCurrentUserResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let user = self.context.store.get_user(principal.user_id).await?;
        let memberships = self
            .context
            .store
            .list_user_memberships(principal.user_id)
            .await?;
        let default_customer_id = memberships
            .iter()
            .find(|(membership, _)| membership.is_default)
            .map_or(0, |(membership, _)| membership.customer_id.get());
        Ok(Response::new(pb::GetCurrentUserResponse {
            user: Some(user.into()),
            memberships: memberships
                .into_iter()
                .map(convert::user_customer)
                .collect(),
            default_customer_id,
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn set_default_customer(
        &self,
        request: Request<pb::SetDefaultCustomerRequest>,
    ) -> Result<Response<pb::SetDefaultCustomerResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let customer_id = CustomerId::parse(request.get_ref().customer_id, "customer_id")?;
        audit::note_resource("customer", customer_id.get());
        let membership = self
            .context
            .store
            .set_default_membership(principal.user_id, customer_id)
            .await?;
        Ok(Response::new(pb::SetDefaultCustomerResponse {
            membership: Some(convert::user_customer(membership)),
        }))
    }

    #[tracing::instrument(skip_all, fields(user_id = request.get_ref().user_id))]
    async fn create_api_token(
        &self,
        request: Request<pb::CreateApiTokenRequest>,
    ) -> Result<Response<pb::CreateApiTokenResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let new = NewApiToken::try_from(request.get_ref())?;
        let owner = token_owner(
            &principal,
            request.get_ref().user_id,
            "create tokens for other users",
        )?;
        let secret = token::generate(token::USER_TOKEN_PREFIX);
        let token = self
            .context
            .store
            .create_token(owner, new, &secret, principal.token_id)
            .await?;
        audit::note_resource("api_token", token.id.get());
        tracing::info!(
            token_id = token.id.get(),
            owner = owner.get(),
            "api token created"
        );
        Ok(Response::new(pb::CreateApiTokenResponse {
            token: Some(token.into()),
            secret: secret.secret,
        }))
    }

    #[tracing::instrument(skip_all, fields(user_id = request.get_ref().user_id))]
    async fn list_api_tokens(
        &self,
        request: Request<pb::ListApiTokensRequest>,
    ) -> Result<Response<pb::ListApiTokensResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let request = request.into_inner();
        let page = PageRequest::parse(request.page_size, &request.page_token)?;
        let owner = token_owner(&principal, request.user_id, "list other users' tokens")?;
        let page = self.context.store.list_tokens(owner, page).await?;
        Ok(Response::new(pb::ListApiTokensResponse {
            tokens: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(token_id = request.get_ref().token_id))]
    async fn revoke_api_token(
        &self,
        request: Request<pb::RevokeApiTokenRequest>,
    ) -> Result<Response<pb::RevokeApiTokenResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let token_id = TokenId::parse(request.get_ref().token_id, "token_id")?;
        audit::note_resource("api_token", token_id.get());
        let owner = (!principal.is_superuser).then_some(principal.user_id);
        let token = self.context.store.revoke_token(token_id, owner).await?;
        tracing::info!("api token revoked");
        Ok(Response::new(pb::RevokeApiTokenResponse {
            token: Some(token.into()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_my_invitations(
        &self,
        request: Request<pb::ListMyInvitationsRequest>,
    ) -> Result<Response<pb::ListMyInvitationsResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let user = self.context.store.get_user(principal.user_id).await?;
        let invitations = self.context.store.list_my_invitations(&user).await?;
        Ok(Response::new(pb::ListMyInvitationsResponse {
            invitations: invitations.into_iter().map(Into::into).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(invitation_id = request.get_ref().invitation_id))]
    async fn accept_invitation(
        &self,
        request: Request<pb::AcceptInvitationRequest>,
    ) -> Result<Response<pb::AcceptInvitationResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let invitation_id = InvitationId::parse(request.get_ref().invitation_id, "invitation_id")?;
        audit::note_resource("invitation", invitation_id.get());
        let user = self.context.store.get_user(principal.user_id).await?;
        let (membership, customer) = self
            .context
            .store
            .accept_invitation(&user, invitation_id)
            .await?;
        audit::note_customer(customer.id);
        tracing::info!(customer_id = customer.id.get(), "invitation accepted");
        Ok(Response::new(pb::AcceptInvitationResponse {
            membership: Some(convert::user_customer((membership, customer))),
        }))
    }

    #[tracing::instrument(skip_all, fields(invitation_id = request.get_ref().invitation_id))]
    async fn decline_invitation(
        &self,
        request: Request<pb::DeclineInvitationRequest>,
    ) -> Result<Response<pb::DeclineInvitationResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let invitation_id = InvitationId::parse(request.get_ref().invitation_id, "invitation_id")?;
        audit::note_resource("invitation", invitation_id.get());
        let user = self.context.store.get_user(principal.user_id).await?;
        self.context
            .store
            .decline_invitation(&user, invitation_id)
            .await?;
        Ok(Response::new(pb::DeclineInvitationResponse {}))
    }
}
