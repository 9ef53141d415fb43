//! The customer's usage and quotas: what it used per day (a chart and a table, exported as CSV
//! or JSON for billing), and each quota with its use; platform administrators change quotas.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use cygnet_proto::v1 as pb;
use cygnet_proto::v1::customer_service_server::CustomerService;
use serde::Deserialize;

use super::{Frame, frame, id, write};
use crate::web::Web;
use crate::web::error::{WebError, render};
use crate::web::session::{Peer, Session};

#[derive(Debug, Default, Deserialize)]
pub struct RangeQuery {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

pub struct QuotaRow {
    pub name: String,
    pub limit: i64,
    pub used: String,
    /// Share of the limit in use, 0-100, for the meter.
    pub percent: i64,
    pub overridden: bool,
}

pub struct DayRow {
    pub day: String,
    pub build_minutes: String,
    pub succeeded: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub timed_out: i64,
    pub log_added: String,
    pub artifacts_added: String,
    pub agent_hours: String,
    pub monitor_checks: i64,
}

/// One bar of the build-time chart (SVG coordinates).
pub struct Bar {
    pub x: i64,
    pub y: i64,
    pub height: i64,
    pub label: String,
}

#[derive(Template)]
#[template(path = "usage.html")]
struct UsagePage {
    frame: Frame,
    quotas: Vec<QuotaRow>,
    /// `None` when the caller may not read usage (not an admin).
    days: Option<Vec<DayRow>>,
    bars: Vec<Bar>,
    from: String,
    to: String,
    platform_admin: bool,
}

const CHART_HEIGHT: i64 = 120;
const BAR_WIDTH: i64 = 14;

pub(super) fn bytes(value: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut size = value as f64;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < UNITS.len() {
        size /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value} B")
    } else {
        format!("{size:.1} {}", UNITS[unit])
    }
}

async fn read_usage(
    web: &Web,
    session: &Session,
    customer_id: i64,
    range: &RangeQuery,
) -> Result<pb::GetCustomerUsageResponse, tonic::Status> {
    web.customers
        .get_customer_usage(session.request(pb::GetCustomerUsageRequest {
            customer_id,
            from: range.from.clone(),
            to: range.to.clone(),
        }))
        .await
        .map(tonic::Response::into_inner)
}

pub async fn usage(
    State(web): State<Web>,
    session: Session,
    Path(customer): Path<String>,
    Query(range): Query<RangeQuery>,
) -> Result<Response, WebError> {
    let customer_id = id(&customer)?;
    let frame = frame(&web, &session, customer_id, "usage").await?;
    let quotas = web
        .customers
        .get_customer_quotas(session.request(pb::GetCustomerQuotasRequest { customer_id }))
        .await?
        .into_inner()
        .quotas
        .into_iter()
        .map(|quota| {
            let byte_quota = quota.name.contains("bytes");
            QuotaRow {
                percent: quota.used.map_or(0, |used| {
                    (used.saturating_mul(100) / quota.limit.max(1)).clamp(0, 100)
                }),
                used: match quota.used {
                    Some(used) if byte_quota => bytes(used),
                    Some(used) => used.to_string(),
                    None => String::new(),
                },
                limit: quota.limit,
                overridden: quota.overridden,
                name: quota.name,
            }
        })
        .collect();
    let (days, bars, from, to) = match read_usage(&web, &session, customer_id, &range).await {
        Ok(usage) => {
            let most = usage
                .days
                .iter()
                .map(|day| day.build_seconds)
                .max()
                .unwrap_or(0)
                .max(1);
            let bars = usage
                .days
                .iter()
                .enumerate()
                .map(|(index, day)| {
                    let height = day.build_seconds * CHART_HEIGHT / most;
                    Bar {
                        x: index as i64 * (BAR_WIDTH + 4),
                        y: CHART_HEIGHT - height,
                        height,
                        label: format!(
                            "{}: {:.1} build minutes",
                            day.day,
                            day.build_seconds as f64 / 60.0
                        ),
                    }
                })
                .collect();
            let days = usage
                .days
                .into_iter()
                .map(|day| DayRow {
                    build_minutes: format!("{:.1}", day.build_seconds as f64 / 60.0),
                    succeeded: day.executions_succeeded,
                    failed: day.executions_failed,
                    cancelled: day.executions_cancelled,
                    timed_out: day.executions_timed_out,
                    log_added: bytes(day.log_bytes_added),
                    artifacts_added: bytes(day.artifact_bytes_added),
                    agent_hours: format!("{:.1}", day.agent_online_seconds as f64 / 3600.0),
                    monitor_checks: day.monitor_checks,
                    day: day.day,
                })
                .collect();
            (Some(days), bars, usage.from, usage.to)
        }
        // Usage is for the customer's admins; members still see the quotas.
        Err(status) if status.code() == tonic::Code::PermissionDenied => {
            (None, Vec::new(), range.from, range.to)
        }
        Err(status) => return Err(status.into()),
    };
    let platform_admin = frame.platform_admin;
    Ok(render(&UsagePage {
        frame,
        quotas,
        days,
        bars,
        from,
        to,
        platform_admin,
    }))
}

/// The usage as a file a billing system reads: `format` is `csv` or `json`.
pub async fn usage_export(
    State(web): State<Web>,
    session: Session,
    Path((customer, format)): Path<(String, String)>,
    Query(range): Query<RangeQuery>,
) -> Result<Response, WebError> {
    let customer_id = id(&customer)?;
    let usage = read_usage(&web, &session, customer_id, &range).await?;
    let name = format!("cygnet-usage-{customer_id}-{}-{}", usage.from, usage.to);
    let (content_type, body, extension) = match format.as_str() {
        "usage.csv" => {
            let mut csv = String::from(
                "customer_id,day,build_seconds,executions_succeeded,executions_failed,executions_cancelled,executions_timed_out,log_bytes_added,artifact_bytes_added,log_bytes_stored,artifact_bytes_stored,agent_online_seconds,monitor_checks\n",
            );
            for day in &usage.days {
                csv.push_str(&format!(
                    "{customer_id},{},{},{},{},{},{},{},{},{},{},{},{}\n",
                    day.day,
                    day.build_seconds,
                    day.executions_succeeded,
                    day.executions_failed,
                    day.executions_cancelled,
                    day.executions_timed_out,
                    day.log_bytes_added,
                    day.artifact_bytes_added,
                    day.log_bytes_stored,
                    day.artifact_bytes_stored,
                    day.agent_online_seconds,
                    day.monitor_checks
                ));
            }
            ("text/csv; charset=utf-8", csv, "csv")
        }
        "usage.json" => {
            let days: Vec<serde_json::Value> = usage
                .days
                .iter()
                .map(|day| {
                    serde_json::json!({
                        "day": day.day,
                        "build_seconds": day.build_seconds,
                        "executions_succeeded": day.executions_succeeded,
                        "executions_failed": day.executions_failed,
                        "executions_cancelled": day.executions_cancelled,
                        "executions_timed_out": day.executions_timed_out,
                        "log_bytes_added": day.log_bytes_added,
                        "artifact_bytes_added": day.artifact_bytes_added,
                        "log_bytes_stored": day.log_bytes_stored,
                        "artifact_bytes_stored": day.artifact_bytes_stored,
                        "agent_online_seconds": day.agent_online_seconds,
                        "monitor_checks": day.monitor_checks,
                    })
                })
                .collect();
            let body = serde_json::json!({
                "customer_id": customer_id,
                "from": usage.from,
                "to": usage.to,
                "days": days,
            });
            ("application/json", body.to_string(), "json")
        }
        _ => return Err(WebError::NotFound),
    };
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.{extension}\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// The quota form: each field a limit, empty for the platform default.
#[derive(Deserialize)]
pub struct QuotaForm {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    limits: HashMap<String, String>,
}

pub async fn set_quotas(
    State(web): State<Web>,
    session: Session,
    peer: Peer,
    Path(customer): Path<String>,
    axum::Form(form): axum::Form<QuotaForm>,
) -> Result<Response, WebError> {
    let customer_id = id(&customer)?;
    session.check_csrf(&form.csrf)?;
    let mut limits = HashMap::new();
    let mut reset = Vec::new();
    for (name, value) in form.limits {
        let Some(name) = name.strip_prefix("quota.") else {
            continue;
        };
        match value.trim() {
            "" => reset.push(name.to_owned()),
            value => {
                let limit = value.parse::<i64>().map_err(|_| {
                    WebError::Page(
                        StatusCode::BAD_REQUEST,
                        format!("limits[{name}] must be a whole number"),
                    )
                })?;
                limits.insert(name.to_owned(), limit);
            }
        }
    }
    let api = web.customers.clone();
    let request = session.request(pb::SetCustomerQuotasRequest {
        customer_id,
        limits,
        reset,
    });
    write(
        &web,
        peer,
        "cygnet.v1.CustomerService/SetCustomerQuotas",
        async move { api.set_customer_quotas(request).await },
    )
    .await?;
    Ok(Redirect::to(&format!("/c/{customer_id}/usage")).into_response())
}
