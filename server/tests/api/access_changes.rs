//! Authentication and authorization answers are cached briefly (store/auth_cache.rs); every
//! change to them made through a server takes effect on its very next request, and on another
//! replica within the cache's lifetime.

use std::time::{Duration, Instant};

use cygnet_proto::v1 as pb;
use tonic::Code;

use crate::common::{Backend, TestServer, assert_status};

async fn get_customer(
    server: &TestServer,
    token: &str,
    customer_id: i64,
) -> Result<pb::Customer, tonic::Status> {
    server
        .customers(token)
        .get_customer(pb::GetCustomerRequest { customer_id })
        .await
        .map(|response| response.into_inner().customer.expect("customer"))
}

async fn create_pipeline(
    server: &TestServer,
    token: &str,
    customer_id: i64,
    name: &str,
) -> Result<(), tonic::Status> {
    server
        .pipelines(token)
        .create_pipeline(pb::CreatePipelineRequest {
            customer_id,
            name: name.into(),
            steps: vec![pb::Step {
                name: "build".into(),
                command: "true".into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .map(|_| ())
}

async fn changes_take_effect_on_the_next_request(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let dev = server.create_user("dev").await;
    server
        .add_member(acme.id, dev.id, pb::Role::Developer)
        .await;

    // Warm the cache, then change the role: the next write is judged by the new role.
    create_pipeline(&server, &dev.token, acme.id, "one")
        .await
        .expect("developer creates");
    server
        .admin_customers()
        .update_member(pb::UpdateMemberRequest {
            customer_id: acme.id,
            user_id: dev.id,
            role: pb::Role::Viewer.into(),
        })
        .await
        .expect("demote");
    assert_status(
        create_pipeline(&server, &dev.token, acme.id, "two").await,
        Code::PermissionDenied,
        "viewer",
    );

    // Removed: the customer is gone for them at once.
    get_customer(&server, &dev.token, acme.id)
        .await
        .expect("member reads");
    server
        .admin_customers()
        .remove_member(pb::RemoveMemberRequest {
            customer_id: acme.id,
            user_id: dev.id,
        })
        .await
        .expect("remove");
    assert_status(
        get_customer(&server, &dev.token, acme.id).await,
        Code::NotFound,
        "not found",
    );

    // Added back: visible at once.
    server.add_member(acme.id, dev.id, pb::Role::Admin).await;
    get_customer(&server, &dev.token, acme.id)
        .await
        .expect("member again");

    // Deactivating the customer freezes writes at once.
    server
        .admin_customers()
        .deactivate_customer(pb::DeactivateCustomerRequest {
            customer_id: acme.id,
        })
        .await
        .expect("deactivate");
    assert_status(
        create_pipeline(&server, &dev.token, acme.id, "three").await,
        Code::FailedPrecondition,
        "deactivated",
    );

    // A customer asked for before it exists is found once created.
    let next_id = acme.id + 1;
    assert_status(
        get_customer(&server, crate::common::ADMIN_TOKEN, next_id).await,
        Code::NotFound,
        "not found",
    );
    let created = server.create_customer("next").await;
    assert_eq!(created.id, next_id);
    get_customer(&server, crate::common::ADMIN_TOKEN, next_id)
        .await
        .expect("found once created");

    // A revoked token stops working on the next request.
    server
        .users(&dev.token)
        .revoke_api_token(pb::RevokeApiTokenRequest {
            token_id: dev.token_id,
        })
        .await
        .expect("revoke own token");
    assert_status(
        get_customer(&server, &dev.token, acme.id).await,
        Code::Unauthenticated,
        "revoked",
    );
}

/// On PostgreSQL a second replica sees a revocation made through the first within the cache's
/// two-second lifetime (it has no other way to learn of it).
async fn another_replica_sees_a_revocation_within_the_cache_lifetime(backend: Backend) {
    if matches!(backend, Backend::Sqlite) {
        return;
    }
    let server = TestServer::start(backend).await;
    let replica = server.start_replica().await;
    let acme = server.create_customer("acme").await;
    let dev = server.create_user("dev").await;
    server.add_member(acme.id, dev.id, pb::Role::Viewer).await;
    get_customer(&replica, &dev.token, acme.id)
        .await
        .expect("cached on the replica");
    server
        .admin_users()
        .revoke_api_token(pb::RevokeApiTokenRequest {
            token_id: dev.token_id,
        })
        .await
        .expect("revoke");
    let revoked = Instant::now();
    loop {
        match get_customer(&replica, &dev.token, acme.id).await {
            Err(status) if status.code() == Code::Unauthenticated => break,
            Err(status) => panic!("unexpected {status:?}"),
            Ok(_) => {
                assert!(
                    revoked.elapsed() < Duration::from_secs(5),
                    "the replica still accepts a token revoked {:?} ago",
                    revoked.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The status an open stream ends with, within `within` (none: it ended cleanly, a failure).
async fn ends_with<T: std::fmt::Debug>(
    mut stream: tonic::Streaming<T>,
    within: Duration,
) -> tonic::Status {
    tokio::time::timeout(within, async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the stream ended without a status"),
                Err(status) => return status,
            }
        }
    })
    .await
    .expect("the stream outlived the access it was opened with")
}

/// A queued execution (no agent: it stays queued) and a WatchExecution of it, open.
async fn watch_queued(
    server: &TestServer,
    watcher: &str,
    customer_id: i64,
) -> tonic::Streaming<pb::WatchExecutionResponse> {
    let pipeline = server
        .create_pipeline(
            customer_id,
            &format!("waits-{}", &watcher[watcher.len().saturating_sub(8)..]),
            vec![crate::common::step("s", "true")],
            vec![],
        )
        .await;
    let execution = server.run_pipeline(customer_id, pipeline.id, &[]).await;
    let mut stream = server
        .pipelines(watcher)
        .watch_execution(pb::WatchExecutionRequest {
            customer_id,
            execution_id: execution.id,
            after_sequence: 0,
        })
        .await
        .expect("watch")
        .into_inner();
    stream
        .message()
        .await
        .expect("first update")
        .expect("the execution as it is");
    stream
}

async fn watch_activity(
    server: &TestServer,
    watcher: &str,
    customer_id: i64,
) -> tonic::Streaming<pb::WatchActivityResponse> {
    server
        .customers(watcher)
        .watch_activity(pb::WatchActivityRequest {
            customer_id,
            after_id: 0,
        })
        .await
        .expect("watch activity")
        .into_inner()
}

/// Open Watch streams end as soon as their caller's access does, with the status a new call
/// gets: a revoked token, a removed membership, a deactivated user; on this server at once.
async fn open_streams_end_with_the_access_they_were_opened_with(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let at_once = Duration::from_secs(2);

    // A revoked token.
    let revoked = server.create_user("revoked").await;
    server
        .add_member(acme.id, revoked.id, pb::Role::Viewer)
        .await;
    let execution = watch_queued(&server, &revoked.token, acme.id).await;
    let activity = watch_activity(&server, &revoked.token, acme.id).await;
    server
        .admin_users()
        .revoke_api_token(pb::RevokeApiTokenRequest {
            token_id: revoked.token_id,
        })
        .await
        .expect("revoke");
    let status = ends_with(execution, at_once).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("revoked"), "{status:?}");
    assert_eq!(
        ends_with(activity, at_once).await.code(),
        Code::Unauthenticated
    );

    // A removed membership: the customer is gone for the caller, as for a new call.
    let removed = server.create_user("removed").await;
    server
        .add_member(acme.id, removed.id, pb::Role::Viewer)
        .await;
    let execution = watch_queued(&server, &removed.token, acme.id).await;
    server
        .admin_customers()
        .remove_member(pb::RemoveMemberRequest {
            customer_id: acme.id,
            user_id: removed.id,
        })
        .await
        .expect("remove member");
    let status = ends_with(execution, at_once).await;
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let fresh = get_customer(&server, &removed.token, acme.id).await;
    assert_eq!(fresh.expect_err("a new call").code(), status.code());

    // A deactivated user.
    let leaver = server.create_user("leaver").await;
    server
        .add_member(acme.id, leaver.id, pb::Role::Viewer)
        .await;
    let execution = watch_queued(&server, &leaver.token, acme.id).await;
    server
        .admin_users()
        .deactivate_user(pb::DeactivateUserRequest { user_id: leaver.id })
        .await
        .expect("deactivate");
    let status = ends_with(execution, at_once).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    // Someone whose access stays keeps watching.
    let stays = server.create_user("stays").await;
    server.add_member(acme.id, stays.id, pb::Role::Viewer).await;
    let mut kept = watch_queued(&server, &stays.token, acme.id).await;
    server
        .admin_customers()
        .update_member(pb::UpdateMemberRequest {
            customer_id: acme.id,
            user_id: stays.id,
            role: pb::Role::Developer.into(),
        })
        .await
        .expect("a change that keeps read access");
    let still_open = tokio::time::timeout(Duration::from_millis(1500), kept.message()).await;
    assert!(still_open.is_err(), "the stream ended: {still_open:?}");
}

/// On PostgreSQL a stream open on a second replica ends within a few seconds of a revocation
/// made through the first.
async fn a_stream_on_another_replica_ends_within_seconds(backend: Backend) {
    if matches!(backend, Backend::Sqlite) {
        return;
    }
    let server = TestServer::start(backend).await;
    let replica = server.start_replica().await;
    let acme = server.create_customer("acme").await;
    let viewer = server.create_user("viewer").await;
    server
        .add_member(acme.id, viewer.id, pb::Role::Viewer)
        .await;
    let stream = watch_queued(&replica, &viewer.token, acme.id).await;
    server
        .admin_users()
        .revoke_api_token(pb::RevokeApiTokenRequest {
            token_id: viewer.token_id,
        })
        .await
        .expect("revoke on the first replica");
    let status = ends_with(stream, Duration::from_secs(8)).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}

cygnet_testkit::backend_tests!(
    changes_take_effect_on_the_next_request,
    another_replica_sees_a_revocation_within_the_cache_lifetime,
    open_streams_end_with_the_access_they_were_opened_with,
    a_stream_on_another_replica_ends_within_seconds,
);
