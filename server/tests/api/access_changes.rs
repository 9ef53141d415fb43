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

cygnet_testkit::backend_tests!(
    changes_take_effect_on_the_next_request,
    another_replica_sees_a_revocation_within_the_cache_lifetime,
);
