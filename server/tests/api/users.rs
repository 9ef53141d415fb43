//! Users, tokens, memberships and the default customer.

use cygnet_proto::v1 as pb;
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, Database};
use tonic::Code;

use crate::common::{Backend, TestServer, assert_status};

async fn tokens_create_use_list_revoke(backend: Backend) {
    let server = TestServer::start(backend).await;
    let dev = server.create_user("dev1").await;
    let mut as_dev = server.users(&dev.token);

    let second = as_dev
        .create_api_token(pb::CreateApiTokenRequest {
            name: "laptop".into(),
            user_id: 0,
            expires_at: Some(prost_types::Timestamp {
                seconds: 4_102_444_800, // 2100-01-01
                nanos: 0,
            }),
        })
        .await
        .expect("create own token")
        .into_inner();
    let second_token = second.token.expect("token");
    assert!(second.secret.starts_with(&second_token.token_prefix));
    assert_ne!(second.secret, dev.token);

    // Both tokens work; listings never include secrets, only prefixes.
    server
        .users(&second.secret)
        .get_current_user(pb::GetCurrentUserRequest {})
        .await
        .expect("second token works");
    let listed = as_dev
        .list_api_tokens(pb::ListApiTokensRequest::default())
        .await
        .expect("list")
        .into_inner()
        .tokens;
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .all(|token| token.user_id == dev.id && token.revoked_at.is_none())
    );

    // Revoke: that token is refused at once, the other keeps working.
    let revoked = as_dev
        .revoke_api_token(pb::RevokeApiTokenRequest {
            token_id: second_token.id,
        })
        .await
        .expect("revoke")
        .into_inner()
        .token
        .expect("token");
    assert!(revoked.revoked_at.is_some());
    assert_status(
        server
            .users(&second.secret)
            .get_current_user(pb::GetCurrentUserRequest {})
            .await,
        Code::Unauthenticated,
        "revoked",
    );
    as_dev
        .get_current_user(pb::GetCurrentUserRequest {})
        .await
        .expect("first token still works");

    // Other users' tokens: not visible, not revocable, not creatable by non-admins.
    let other = server.create_user("other").await;
    assert_status(
        server
            .users(&other.token)
            .revoke_api_token(pb::RevokeApiTokenRequest {
                token_id: dev.token_id,
            })
            .await,
        Code::NotFound,
        "not found",
    );
    assert_status(
        server
            .users(&other.token)
            .list_api_tokens(pb::ListApiTokensRequest {
                user_id: dev.id,
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "platform administrators",
    );
    assert_status(
        server
            .users(&other.token)
            .create_api_token(pb::CreateApiTokenRequest {
                name: "stolen".into(),
                user_id: dev.id,
                expires_at: None,
            })
            .await,
        Code::PermissionDenied,
        "platform administrators",
    );
    // A platform administrator may revoke anyone's token.
    server
        .admin_users()
        .revoke_api_token(pb::RevokeApiTokenRequest {
            token_id: dev.token_id,
        })
        .await
        .expect("admin revokes");
    assert_status(
        as_dev.get_current_user(pb::GetCurrentUserRequest {}).await,
        Code::Unauthenticated,
        "revoked",
    );
}

async fn expired_tokens_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let dev = server.create_user("dev1").await;
    // Move the token's expiry into the past directly in the database: no waiting in tests.
    let db = Database::connect(&server.database_url)
        .await
        .expect("connect");
    let past = chrono::DateTime::parse_from_rfc3339("2020-01-01T00:00:00Z")
        .expect("date")
        .with_timezone(&chrono::Utc);
    let expire = Query::update()
        .table("api_tokens")
        .value("expires_at", past)
        .and_where(Expr::col("id").eq(dev.token_id))
        .to_owned();
    db.execute(&expire).await.expect("expire token");
    db.close().await.expect("close");
    assert_status(
        server
            .users(&dev.token)
            .get_current_user(pb::GetCurrentUserRequest {})
            .await,
        Code::Unauthenticated,
        "expired",
    );
}

async fn memberships_and_default_customer(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let techstart = server.create_customer("techstart").await;
    let globalco = server.create_customer("globalco").await;
    let dev = server.create_user("dev1").await;
    server
        .add_member(acme.id, dev.id, pb::Role::Developer)
        .await;
    let second = server.add_member(techstart.id, dev.id, pb::Role::Qa).await;
    assert!(!second.membership.expect("membership").is_default);

    let mut as_dev = server.users(&dev.token);
    let me = as_dev
        .get_current_user(pb::GetCurrentUserRequest {})
        .await
        .expect("me")
        .into_inner();
    assert_eq!(me.default_customer_id, acme.id);
    let switcher: Vec<_> = me
        .memberships
        .iter()
        .map(|entry| {
            let membership = entry.membership.as_ref().expect("membership");
            let customer = entry.customer.as_ref().expect("customer");
            (
                customer.name.clone(),
                membership.role(),
                membership.is_default,
            )
        })
        .collect();
    assert_eq!(
        switcher,
        [
            ("acme".to_owned(), pb::Role::Developer, true),
            ("techstart".to_owned(), pb::Role::Qa, false),
        ]
    );

    let switched = as_dev
        .set_default_customer(pb::SetDefaultCustomerRequest {
            customer_id: techstart.id,
        })
        .await
        .expect("switch default")
        .into_inner()
        .membership
        .expect("membership");
    assert!(switched.membership.expect("membership").is_default);
    assert_eq!(switched.customer.expect("customer").id, techstart.id);
    assert_status(
        as_dev
            .set_default_customer(pb::SetDefaultCustomerRequest {
                customer_id: globalco.id,
            })
            .await,
        Code::NotFound,
        "not found",
    );
    let me = as_dev
        .get_current_user(pb::GetCurrentUserRequest {})
        .await
        .expect("me")
        .into_inner();
    assert_eq!(me.default_customer_id, techstart.id);
    assert_eq!(
        me.memberships
            .iter()
            .filter(|entry| entry.membership.as_ref().is_some_and(|m| m.is_default))
            .count(),
        1
    );

    // Removing the default membership makes the remaining one the default.
    server
        .admin_customers()
        .remove_member(pb::RemoveMemberRequest {
            customer_id: techstart.id,
            user_id: dev.id,
        })
        .await
        .expect("remove");
    let me = as_dev
        .get_current_user(pb::GetCurrentUserRequest {})
        .await
        .expect("me")
        .into_inner();
    assert_eq!(me.default_customer_id, acme.id);
    assert_eq!(me.memberships.len(), 1);
}

async fn user_visibility_and_deactivation(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let techstart = server.create_customer("techstart").await;
    let alice = server.create_user("alice").await;
    let bob = server.create_user("bob").await;
    let tess = server.create_user("tess").await;
    server.add_member(acme.id, alice.id, pb::Role::Viewer).await;
    server
        .add_member(acme.id, bob.id, pb::Role::Developer)
        .await;
    server
        .add_member(techstart.id, tess.id, pb::Role::Admin)
        .await;

    let mut as_alice = server.users(&alice.token);
    let seen = as_alice
        .get_user(pb::GetUserRequest { user_id: bob.id })
        .await
        .expect("fellow member is visible")
        .into_inner()
        .user
        .expect("user");
    assert_eq!(seen.email, "bob@example.com");
    assert_status(
        as_alice
            .get_user(pb::GetUserRequest { user_id: tess.id })
            .await,
        Code::NotFound,
        &format!("user {} not found", tess.id),
    );
    let members = as_alice
        .list_users(pb::ListUsersRequest {
            customer_id: acme.id,
            ..Default::default()
        })
        .await
        .expect("list members' users")
        .into_inner()
        .users;
    assert_eq!(
        members
            .iter()
            .map(|user| user.username.as_str())
            .collect::<Vec<_>>(),
        ["alice", "bob"]
    );
    assert_status(
        as_alice.list_users(pb::ListUsersRequest::default()).await,
        Code::PermissionDenied,
        "only platform administrators may list every user",
    );
    assert_status(
        as_alice
            .create_user(pb::CreateUserRequest {
                username: "mallory".into(),
                email: "mallory@example.com".into(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "create users",
    );
    assert_status(
        as_alice
            .deactivate_user(pb::DeactivateUserRequest { user_id: bob.id })
            .await,
        Code::PermissionDenied,
        "deactivate users",
    );

    let mut admin = server.admin_users();
    let all = admin
        .list_users(pb::ListUsersRequest::default())
        .await
        .expect("admin lists all")
        .into_inner()
        .users;
    assert_eq!(all.len(), 4);
    let me = admin
        .get_current_user(pb::GetCurrentUserRequest {})
        .await
        .expect("me")
        .into_inner()
        .user
        .expect("user");
    assert_status(
        admin
            .deactivate_user(pb::DeactivateUserRequest { user_id: me.id })
            .await,
        Code::FailedPrecondition,
        "yourself",
    );
    let deactivated = admin
        .deactivate_user(pb::DeactivateUserRequest { user_id: bob.id })
        .await
        .expect("deactivate")
        .into_inner()
        .user
        .expect("user");
    assert!(!deactivated.is_active);
    assert_status(
        server
            .users(&bob.token)
            .get_current_user(pb::GetCurrentUserRequest {})
            .await,
        Code::Unauthenticated,
        "deactivated",
    );
    // A deactivated user cannot get new tokens or memberships.
    assert_status(
        admin
            .create_api_token(pb::CreateApiTokenRequest {
                name: "again".into(),
                user_id: bob.id,
                expires_at: None,
            })
            .await,
        Code::FailedPrecondition,
        "deactivated",
    );
    assert_status(
        server
            .admin_customers()
            .add_member(pb::AddMemberRequest {
                customer_id: techstart.id,
                user_id: bob.id,
                role: pb::Role::Viewer.into(),
            })
            .await,
        Code::FailedPrecondition,
        "deactivated",
    );
}

async fn duplicate_users_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.create_user("dev1").await;
    let mut admin = server.admin_users();
    assert_status(
        admin
            .create_user(pb::CreateUserRequest {
                username: "dev1".into(),
                email: "someone-else@example.com".into(),
                ..Default::default()
            })
            .await,
        Code::AlreadyExists,
        "username \"dev1\"",
    );
    assert_status(
        admin
            .create_user(pb::CreateUserRequest {
                username: "dev2".into(),
                email: "DEV1@example.com".into(),
                ..Default::default()
            })
            .await,
        Code::AlreadyExists,
        "email \"dev1@example.com\"",
    );
    let all = admin
        .list_users(pb::ListUsersRequest::default())
        .await
        .expect("list")
        .into_inner()
        .users;
    assert_eq!(all.len(), 2, "admin and dev1 only");
}

cygnet_testkit::backend_tests!(
    tokens_create_use_list_revoke,
    expired_tokens_are_refused,
    memberships_and_default_customer,
    user_visibility_and_deactivation,
    duplicate_users_are_refused,
);
