//! `cygnet.v1.CustomerService`.

use cygnet_proto::v1::{self as pb, customer_service_server::CustomerService};
use tonic::{Request, Response, Status};

use super::{ApiContext, convert};
use crate::auth::Action;
use crate::domain::validate::{
    json_object, optional_email, optional_phone, optional_text, optional_url, required_line, slug,
};
use crate::domain::{CustomerId, CustomerPatch, NewCustomer, PageRequest, UserId, ValidationError};

/// Handler of `CustomerService`.
#[derive(Clone)]
pub struct CustomerApi {
    context: ApiContext,
}

impl CustomerApi {
    pub fn new(context: ApiContext) -> Self {
        Self { context }
    }
}

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
        let role = convert::parse_role("role", request_body.role)?;
        let scope = self
            .context
            .authorizer
            .scope(&principal, customer_id, Action::ManageMembers)
            .await?;
        let member = self.context.store.add_member(&scope, user_id, role).await?;
        Ok(Response::new(pb::AddMemberResponse {
            member: Some(convert::member(member)),
        }))
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
}
