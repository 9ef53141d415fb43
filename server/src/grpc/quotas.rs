//! GetCustomerQuotas, SetCustomerQuotas and GetCustomerUsage of `CustomerService`.

use cygnet_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::customers::CustomerApi;
use crate::audit;
use crate::auth::Action;
use crate::domain::CustomerId;
use crate::domain::usage::UsageRange;
use crate::store::now;
use crate::wire::quota::quota_changes;
use crate::wire::usage::usage_total;

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

pub(super) async fn get_customer_usage(
    api: &CustomerApi,
    request: Request<pb::GetCustomerUsageRequest>,
) -> Result<Response<pb::GetCustomerUsageResponse>, Status> {
    let body = request.get_ref();
    let range = UsageRange::parse(&body.from, &body.to, now().date_naive());
    let scope = api
        .context
        .scope(request.metadata(), body.customer_id, Action::ReadUsage)
        .await?;
    let range = range?;
    let days = api.context.store.customer_usage(&scope, range).await?;
    Ok(Response::new(pb::GetCustomerUsageResponse {
        total: Some(usage_total(&days)),
        days: days.iter().map(Into::into).collect(),
        from: range.from.format("%Y-%m-%d").to_string(),
        to: range.to.format("%Y-%m-%d").to_string(),
    }))
}
