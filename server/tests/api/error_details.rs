//! Refusals a program can read: beside the human message, each carries the standard
//! `google.rpc` details — `ErrorInfo` with a stable reason, `BadRequest` naming the field,
//! `QuotaFailure`, `RetryInfo` — decoded here as any gRPC client would.

use cygnet_proto::v1 as pb;
use cygnet_testkit::{Backend, TestOptions, TestServer, step};
use tonic::Code;
use tonic_types::StatusExt;

/// The `ErrorInfo` of a refusal: its reason and metadata, in the CygnetCI domain.
fn reason(status: &tonic::Status) -> (String, std::collections::HashMap<String, String>) {
    let details = status.check_error_details().expect("details decode");
    let info = details
        .error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.domain, "cygnet.ci");
    (info.reason.clone(), info.metadata.clone())
}

async fn refusals_carry_structured_details(backend: Backend) {
    let server = TestServer::start_with(
        backend,
        TestOptions {
            rate_limits: cygnet_server::config::RateLimits {
                requests_per_minute_per_token: 600,
                requests_per_minute_per_address: 600,
                ..Default::default()
            },
            ..TestOptions::default()
        },
    )
    .await;
    let acme = server.create_customer("acme").await;

    // INVALID_ARGUMENT names the field in a BadRequest.
    let invalid = server
        .admin_pipelines()
        .create_pipeline(pb::CreatePipelineRequest {
            customer_id: acme.id,
            name: "build".into(),
            steps: vec![step("", "true")],
            ..Default::default()
        })
        .await
        .expect_err("a step without a name");
    assert_eq!(invalid.code(), Code::InvalidArgument);
    let details = invalid.get_error_details();
    let violations = &details.bad_request().expect("BadRequest").field_violations;
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].field, "steps[0].name", "{invalid:?}");
    assert!(
        invalid.message().starts_with("steps[0].name "),
        "the same human message: {}",
        invalid.message()
    );
    let (why, metadata) = reason(&invalid);
    assert_eq!(why, "INVALID_FIELD");
    assert_eq!(metadata["field"], "steps[0].name");

    // Over a quota: QuotaFailure and the figures.
    server
        .admin_customers()
        .set_customer_quotas(pb::SetCustomerQuotasRequest {
            customer_id: acme.id,
            limits: [("pipelines".to_owned(), 1)].into(),
            reset: vec![],
        })
        .await
        .expect("set quota");
    server
        .create_pipeline(acme.id, "first", vec![step("a", "true")], vec![])
        .await;
    let over = server
        .admin_pipelines()
        .create_pipeline(pb::CreatePipelineRequest {
            customer_id: acme.id,
            name: "second".into(),
            steps: vec![step("a", "true")],
            ..Default::default()
        })
        .await
        .expect_err("past the pipelines quota");
    assert_eq!(over.code(), Code::ResourceExhausted);
    let details = over.get_error_details();
    let violation = &details.quota_failure().expect("QuotaFailure").violations[0];
    assert_eq!(violation.subject, format!("customer:{}", acme.id));
    assert!(violation.description.contains("pipelines"), "{violation:?}");
    let (why, metadata) = reason(&over);
    assert_eq!(why, "QUOTA_EXCEEDED");
    assert_eq!(metadata["quota"], "pipelines");
    assert_eq!(
        (metadata["limit"].as_str(), metadata["used"].as_str()),
        ("1", "1")
    );

    // A role that may not: NOT_PERMITTED; another customer's record: NOT_FOUND.
    let viewer = server.create_user("viewer").await;
    server
        .add_member(acme.id, viewer.id, pb::Role::Viewer)
        .await;
    let denied = server
        .pipelines(&viewer.token)
        .create_pipeline(pb::CreatePipelineRequest {
            customer_id: acme.id,
            name: "mine".into(),
            steps: vec![step("a", "true")],
            ..Default::default()
        })
        .await
        .expect_err("a viewer writes nothing");
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(reason(&denied).0, "NOT_PERMITTED");
    let globex = server.create_customer("globex").await;
    let hidden = server
        .customers(&viewer.token)
        .get_customer(pb::GetCustomerRequest {
            customer_id: globex.id,
        })
        .await
        .expect_err("not theirs");
    assert_eq!(hidden.code(), Code::NotFound);
    assert_eq!(reason(&hidden).0, "NOT_FOUND");
}

/// Past a request rate: RATE_LIMITED with the wait in a RetryInfo.
async fn a_rate_limit_says_when_to_retry(backend: Backend) {
    let server = TestServer::start_with(
        backend,
        TestOptions {
            rate_limits: cygnet_server::config::RateLimits {
                requests_per_minute_per_token: 10,
                requests_per_minute_per_address: 10,
                ..Default::default()
            },
            ..TestOptions::default()
        },
    )
    .await;
    let acme = server.create_customer("acme").await;
    let mut admin = server.admin_customers();
    let limited = loop {
        if let Err(status) = admin
            .get_customer(pb::GetCustomerRequest {
                customer_id: acme.id,
            })
            .await
        {
            break status;
        }
    };
    assert_eq!(limited.code(), Code::ResourceExhausted);
    let details = limited.get_error_details();
    let delay = details
        .retry_info()
        .and_then(|retry| retry.retry_delay)
        .expect("RetryInfo with a delay");
    assert!(
        delay > std::time::Duration::ZERO && delay <= std::time::Duration::from_secs(6),
        "{delay:?}"
    );
    let (why, metadata) = reason(&limited);
    assert_eq!(why, "RATE_LIMITED");
    assert_eq!(metadata["caller"], "token");
}

cygnet_testkit::backend_tests!(
    refusals_carry_structured_details,
    a_rate_limit_says_when_to_retry
);
