//! The isolation matrix: a member of customer A, whatever their role, calling every
//! customer-scoped RPC on customer B gets NOT_FOUND — word for word what an id that does not exist
//! gets — and B is unchanged afterwards.

use cygnet_proto::v1 as pb;
use tonic::{Code, Status};

use crate::common::{Backend, TestServer, assert_status};

fn drop_ok<T>(result: Result<tonic::Response<T>, Status>) -> Result<(), Status> {
    result.map(|_| ())
}

/// Calls every customer-scoped RPC with `customer_id` as `token`, returning each outcome by name.
async fn call_every_customer_rpc(
    server: &TestServer,
    token: &str,
    customer_id: i64,
    some_user_id: i64,
) -> Vec<(&'static str, Result<(), Status>)> {
    let mut customers = server.customers(token);
    let mut users = server.users(token);
    vec![
        (
            "GetCustomer",
            drop_ok(
                customers
                    .get_customer(pb::GetCustomerRequest { customer_id })
                    .await,
            ),
        ),
        (
            "UpdateCustomer",
            drop_ok(
                customers
                    .update_customer(pb::UpdateCustomerRequest {
                        customer_id,
                        description: Some("pwned".into()),
                        ..Default::default()
                    })
                    .await,
            ),
        ),
        (
            "DeactivateCustomer",
            drop_ok(
                customers
                    .deactivate_customer(pb::DeactivateCustomerRequest { customer_id })
                    .await,
            ),
        ),
        (
            "ReactivateCustomer",
            drop_ok(
                customers
                    .reactivate_customer(pb::ReactivateCustomerRequest { customer_id })
                    .await,
            ),
        ),
        (
            "AddMember",
            drop_ok(
                customers
                    .add_member(pb::AddMemberRequest {
                        customer_id,
                        user_id: some_user_id,
                        role: pb::Role::Admin.into(),
                    })
                    .await,
            ),
        ),
        (
            "UpdateMember",
            drop_ok(
                customers
                    .update_member(pb::UpdateMemberRequest {
                        customer_id,
                        user_id: some_user_id,
                        role: pb::Role::Viewer.into(),
                    })
                    .await,
            ),
        ),
        (
            "RemoveMember",
            drop_ok(
                customers
                    .remove_member(pb::RemoveMemberRequest {
                        customer_id,
                        user_id: some_user_id,
                    })
                    .await,
            ),
        ),
        (
            "ListMembers",
            drop_ok(
                customers
                    .list_members(pb::ListMembersRequest {
                        customer_id,
                        ..Default::default()
                    })
                    .await,
            ),
        ),
        (
            "ListUsers",
            drop_ok(
                users
                    .list_users(pb::ListUsersRequest {
                        customer_id,
                        ..Default::default()
                    })
                    .await,
            ),
        ),
        (
            "SetDefaultCustomer",
            drop_ok(
                users
                    .set_default_customer(pb::SetDefaultCustomerRequest { customer_id })
                    .await,
            ),
        ),
    ]
}

async fn member_of_a_sees_nothing_of_b(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let techstart = server.create_customer("techstart").await;
    let bob = server.create_user("bob").await;
    server
        .add_member(techstart.id, bob.id, pb::Role::Admin)
        .await;
    let techstart_before = server
        .admin_customers()
        .get_customer(pb::GetCustomerRequest {
            customer_id: techstart.id,
        })
        .await
        .expect("get")
        .into_inner();

    for role in [
        pb::Role::Admin,
        pb::Role::Devops,
        pb::Role::Developer,
        pb::Role::Qa,
        pb::Role::Viewer,
    ] {
        let alice = server
            .create_user(&format!(
                "alice-{}",
                role.as_str_name().to_ascii_lowercase().replace('_', "-")
            ))
            .await;
        server.add_member(acme.id, alice.id, role).await;

        let against_b = call_every_customer_rpc(&server, &alice.token, techstart.id, bob.id).await;
        let against_nothing = call_every_customer_rpc(&server, &alice.token, 987_654, bob.id).await;
        for ((rpc, outcome), (_, unknown)) in against_b.into_iter().zip(against_nothing) {
            let status = outcome.expect_err(rpc);
            let unknown = unknown.expect_err(rpc);
            assert_eq!(
                status.code(),
                Code::NotFound,
                "{rpc} as {role:?}: {status:?}"
            );
            assert_eq!(
                status.message().replace(&techstart.id.to_string(), "ID"),
                unknown.message().replace("987654", "ID"),
                "{rpc}: another customer must look exactly like no customer"
            );
            assert!(
                !status.message().contains("techstart"),
                "{rpc} leaked the name"
            );
        }

        // Lists and lookups show nothing of B either.
        let listed = server
            .customers(&alice.token)
            .list_customers(pb::ListCustomersRequest::default())
            .await
            .expect("list")
            .into_inner()
            .customers;
        assert_eq!(listed.iter().map(|c| c.id).collect::<Vec<_>>(), [acme.id]);
        assert_status(
            server
                .users(&alice.token)
                .get_user(pb::GetUserRequest { user_id: bob.id })
                .await,
            Code::NotFound,
            "not found",
        );
        let me = server
            .users(&alice.token)
            .get_current_user(pb::GetCurrentUserRequest {})
            .await
            .expect("me")
            .into_inner();
        assert!(
            me.memberships
                .iter()
                .all(|entry| entry.customer.as_ref().is_some_and(|c| c.id == acme.id))
        );
    }

    // B is untouched: same record, same single member.
    let techstart_after = server
        .admin_customers()
        .get_customer(pb::GetCustomerRequest {
            customer_id: techstart.id,
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(techstart_before, techstart_after);
    let members = server
        .admin_customers()
        .list_members(pb::ListMembersRequest {
            customer_id: techstart.id,
            ..Default::default()
        })
        .await
        .expect("members")
        .into_inner()
        .members;
    assert_eq!(members.len(), 1);
    assert_eq!(
        members[0].membership.as_ref().expect("membership").role(),
        pb::Role::Admin
    );
}

async fn unauthenticated_calls_are_refused_everywhere(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let bob = server.create_user("bob").await;
    for (token, fragment) in [
        ("cyg_made-up-token", "token is not valid"),
        ("", "authorization must be"),
    ] {
        for (rpc, outcome) in call_every_customer_rpc(&server, token, acme.id, bob.id).await {
            let status = outcome.expect_err(rpc);
            assert_eq!(status.code(), Code::Unauthenticated, "{rpc}: {status:?}");
            assert!(status.message().contains(fragment), "{rpc}: {status:?}");
        }
    }
    // No authorization metadata at all.
    let mut anonymous =
        cygnet_proto::v1::customer_service_client::CustomerServiceClient::with_interceptor(
            server.channel(),
            crate::common::Bearer::none(),
        );
    assert_status(
        anonymous
            .list_customers(pb::ListCustomersRequest::default())
            .await,
        Code::Unauthenticated,
        "missing authorization",
    );
    let mut anonymous_users =
        cygnet_proto::v1::user_service_client::UserServiceClient::with_interceptor(
            server.channel(),
            crate::common::Bearer::none(),
        );
    assert_status(
        anonymous_users
            .get_current_user(pb::GetCurrentUserRequest {})
            .await,
        Code::Unauthenticated,
        "missing authorization",
    );
    assert_status(
        anonymous_users
            .create_user(pb::CreateUserRequest {
                username: "eve".into(),
                email: "eve@example.com".into(),
                ..Default::default()
            })
            .await,
        Code::Unauthenticated,
        "missing authorization",
    );
}

cygnet_testkit::backend_tests!(
    member_of_a_sees_nothing_of_b,
    unauthenticated_calls_are_refused_everywhere,
);
