//! GetCustomerQuotas and SetCustomerQuotas of `CustomerService`.

use cygnet_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::customers::CustomerApi;
use crate::audit;
use crate::auth::Action;
use crate::domain::CustomerId;
use crate::wire::quota::quota_changes;

pub(super) async fn get_customer_quotas(
    api: &CustomerApi,
    request: Request<pb::GetCustomerQuotasRequest>,
) -> Result<Response<pb::GetCustomerQuotasResponse>, Status> {
    let scope = api
        .context
        .scope(
            request.metadata(),
            request.get_ref().customer_id,
            Action::ReadCustomer,
        )
        .await?;
    let quotas = api.context.store.customer_quotas(&scope).await?;
    Ok(Response::new(pb::GetCustomerQuotasResponse {
        quotas: quotas.into_iter().map(Into::into).collect(),
    }))
}

pub(super) async fn set_customer_quotas(
    api: &CustomerApi,
    request: Request<pb::SetCustomerQuotasRequest>,
) -> Result<Response<pb::SetCustomerQuotasResponse>, Status> {
    let principal = api
        .context
        .authenticator
        .authenticate(request.metadata())
        .await?;
    let body = request.get_ref();
    let customer_id = CustomerId::parse(body.customer_id, "customer_id")?;
    audit::note_resource("customer", customer_id.get());
    let changes = quota_changes(&body.limits, &body.reset)?;
    let admin = principal.require_platform_admin("set the quotas of customers")?;
    audit::note_customer(customer_id);
    let quotas = api
        .context
        .store
        .set_customer_quotas(&admin, customer_id, &changes.set, &changes.reset)
        .await?;
    tracing::info!(
        customer_id = customer_id.get(),
        set = changes.set.len(),
        reset = changes.reset.len(),
        "customer quotas changed"
    );
    Ok(Response::new(pb::SetCustomerQuotasResponse {
        quotas: quotas.into_iter().map(Into::into).collect(),
    }))
}
