//! Customers: create, read, list, update, soft delete; members and roles.

use cygnet_proto::v1 as pb;
use tonic::Code;

use crate::common::{Backend, TestServer, assert_status};

async fn customer_create_get_update_list(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut admin = server.admin_customers();
    let created = admin
        .create_customer(pb::CreateCustomerRequest {
            name: "acme".into(),
            display_name: "Acme Corporation".into(),
            description: "Builds everything".into(),
            logo_url: "https://acme.example.com/logo.png".into(),
            contact_email: "Ops@Acme.example.com".into(),
            contact_phone: "+1 (555) 010-0000".into(),
            address: "1 Main St\nSpringfield".into(),
            settings: r#"{"allow_self_approval": false}"#.into(),
        })
        .await
        .expect("create")
        .into_inner()
        .customer
        .expect("customer");
    assert!(created.id > 0);
    assert!(created.is_active);
    assert_eq!(created.contact_email, "ops@acme.example.com");
    assert_eq!(created.created_at, created.updated_at);
    let settings: serde_json::Value = serde_json::from_str(&created.settings).expect("json");
    assert_eq!(settings["allow_self_approval"], false);
    let me = server
        .admin_users()
        .get_current_user(pb::GetCurrentUserRequest {})
        .await
        .expect("me")
        .into_inner();
    assert_eq!(created.created_by, me.user.expect("user").id);

    let fetched = admin
        .get_customer(pb::GetCustomerRequest {
            customer_id: created.id,
        })
        .await
        .expect("get")
        .into_inner()
        .customer
        .expect("customer");
    assert_eq!(fetched, created);

    // A partial update changes only the fields that are set.
    let updated = admin
        .update_customer(pb::UpdateCustomerRequest {
            customer_id: created.id,
            description: Some("Builds and ships".into()),
            contact_phone: Some(String::new()),
            settings: Some(r#"{"allow_self_approval": true}"#.into()),
            ..Default::default()
        })
        .await
        .expect("update")
        .into_inner()
        .customer
        .expect("customer");
    assert_eq!(updated.description, "Builds and ships");
    assert_eq!(updated.contact_phone, "");
    assert_eq!(updated.display_name, "Acme Corporation");
    assert_eq!(updated.logo_url, created.logo_url);
    assert!(updated.settings.contains("true"));
    let instant =
        |at: &Option<prost_types::Timestamp>| at.as_ref().map(|at| (at.seconds, at.nanos));
    assert!(instant(&updated.updated_at) > instant(&created.updated_at));

    // The name is unique: the duplicate is refused and nothing is written.
    assert_status(
        admin
            .create_customer(pb::CreateCustomerRequest {
                name: "acme".into(),
                display_name: "Another Acme".into(),
                ..Default::default()
            })
            .await,
        Code::AlreadyExists,
        "\"acme\"",
    );
    for name in ["techstart", "globalco", "initech", "umbrella"] {
        server.create_customer(name).await;
    }
    // Paging: 5 customers in pages of 2, in id order, nothing repeated or skipped.
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = admin
            .list_customers(pb::ListCustomersRequest {
                page_size: 2,
                page_token: page_token.clone(),
                active_only: false,
            })
            .await
            .expect("list")
            .into_inner();
        assert!(page.customers.len() <= 2);
        seen.extend(page.customers.iter().map(|customer| customer.name.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(
        seen,
        ["acme", "techstart", "globalco", "initech", "umbrella"]
    );
}

async fn deactivated_customer_is_readable_but_frozen(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let owner = server.create_user("owner").await;
    let viewer = server.create_user("viewer").await;
    let newcomer = server.create_user("newcomer").await;
    server.add_member(acme.id, owner.id, pb::Role::Admin).await;
    server
        .add_member(acme.id, viewer.id, pb::Role::Viewer)
        .await;

    // Customer admins manage their customer but may not deactivate it.
    assert_status(
        server
            .customers(&owner.token)
            .deactivate_customer(pb::DeactivateCustomerRequest {
                customer_id: acme.id,
            })
            .await,
        Code::PermissionDenied,
        "deactivate",
    );
    let deactivated = server
        .admin_customers()
        .deactivate_customer(pb::DeactivateCustomerRequest {
            customer_id: acme.id,
        })
        .await
        .expect("deactivate")
        .into_inner()
        .customer
        .expect("customer");
    assert!(!deactivated.is_active);

    // Members still read it.
    let read = server
        .customers(&viewer.token)
        .get_customer(pb::GetCustomerRequest {
            customer_id: acme.id,
        })
        .await
        .expect("members read a deactivated customer")
        .into_inner()
        .customer
        .expect("customer");
    assert!(!read.is_active);
    let members = server
        .customers(&viewer.token)
        .list_members(pb::ListMembersRequest {
            customer_id: acme.id,
            ..Default::default()
        })
        .await
        .expect("members listed")
        .into_inner()
        .members;
    assert_eq!(members.len(), 2);

    // Nothing new is created or changed in it.
    assert_status(
        server
            .customers(&owner.token)
            .add_member(pb::AddMemberRequest {
                customer_id: acme.id,
                user_id: newcomer.id,
                role: pb::Role::Developer.into(),
            })
            .await,
        Code::FailedPrecondition,
        "deactivated",
    );
    assert_status(
        server
            .customers(&owner.token)
            .update_customer(pb::UpdateCustomerRequest {
                customer_id: acme.id,
                description: Some("changed".into()),
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        "deactivated",
    );
    let active_only = server
        .customers(&viewer.token)
        .list_customers(pb::ListCustomersRequest {
            active_only: true,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .customers;
    assert!(active_only.is_empty());

    // Reactivation brings it back.
    let reactivated = server
        .admin_customers()
        .reactivate_customer(pb::ReactivateCustomerRequest {
            customer_id: acme.id,
        })
        .await
        .expect("reactivate")
        .into_inner()
        .customer
        .expect("customer");
    assert!(reactivated.is_active);
    server
        .customers(&owner.token)
        .invite_member(pb::InviteMemberRequest {
            customer_id: acme.id,
            username: newcomer.username.clone(),
            role: pb::Role::Developer.into(),
        })
        .await
        .expect("inviting members works again");
}

async fn members_and_roles(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let owner = server.create_user("owner").await;
    let dev = server.create_user("dev1").await;
    let qa = server.create_user("qa").await;
    server.add_member(acme.id, owner.id, pb::Role::Admin).await;
    let mut as_owner = server.customers(&owner.token);

    // A customer admin invites (see the authority tests); adding directly is the platform's.
    assert_status(
        as_owner
            .add_member(pb::AddMemberRequest {
                customer_id: acme.id,
                user_id: dev.id,
                role: pb::Role::Developer.into(),
            })
            .await,
        Code::PermissionDenied,
        "customer admins invite them (InviteMember)",
    );
    let mut platform = server.admin_customers();
    let added = platform
        .add_member(pb::AddMemberRequest {
            customer_id: acme.id,
            user_id: dev.id,
            role: pb::Role::Developer.into(),
        })
        .await
        .expect("platform admin adds a member")
        .into_inner()
        .member
        .expect("member");
    let membership = added.membership.expect("membership");
    assert_eq!(membership.role(), pb::Role::Developer);
    assert!(membership.is_default, "first membership is the default");
    assert_eq!(added.user.expect("user").username, "dev1");

    assert_status(
        platform
            .add_member(pb::AddMemberRequest {
                customer_id: acme.id,
                user_id: dev.id,
                role: pb::Role::Viewer.into(),
            })
            .await,
        Code::AlreadyExists,
        "already a member",
    );
    assert_status(
        platform
            .add_member(pb::AddMemberRequest {
                customer_id: acme.id,
                user_id: 999_999,
                role: pb::Role::Viewer.into(),
            })
            .await,
        Code::NotFound,
        "user 999999 not found",
    );

    // A developer reads members but may not manage them.
    let mut as_dev = server.customers(&dev.token);
    let listed = as_dev
        .list_members(pb::ListMembersRequest {
            customer_id: acme.id,
            ..Default::default()
        })
        .await
        .expect("developer lists members")
        .into_inner()
        .members;
    let names: Vec<_> = listed
        .iter()
        .map(|member| member.user.as_ref().expect("user").username.clone())
        .collect();
    assert_eq!(names, ["owner", "dev1"]);
    assert_status(
        as_dev
            .add_member(pb::AddMemberRequest {
                customer_id: acme.id,
                user_id: qa.id,
                role: pb::Role::Qa.into(),
            })
            .await,
        Code::PermissionDenied,
        "role developer may not manage members of customer",
    );
    assert_status(
        as_dev
            .update_customer(pb::UpdateCustomerRequest {
                customer_id: acme.id,
                description: Some("x".into()),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "role developer may not update",
    );

    // Role changes; the last admin cannot be demoted or removed.
    let promoted = as_owner
        .update_member(pb::UpdateMemberRequest {
            customer_id: acme.id,
            user_id: dev.id,
            role: pb::Role::Devops.into(),
        })
        .await
        .expect("update role")
        .into_inner()
        .member
        .expect("member");
    assert_eq!(
        promoted.membership.expect("membership").role(),
        pb::Role::Devops
    );
    assert_status(
        as_owner
            .update_member(pb::UpdateMemberRequest {
                customer_id: acme.id,
                user_id: owner.id,
                role: pb::Role::Viewer.into(),
            })
            .await,
        Code::FailedPrecondition,
        "last admin",
    );
    assert_status(
        as_owner
            .remove_member(pb::RemoveMemberRequest {
                customer_id: acme.id,
                user_id: owner.id,
            })
            .await,
        Code::FailedPrecondition,
        "last admin",
    );
    as_owner
        .remove_member(pb::RemoveMemberRequest {
            customer_id: acme.id,
            user_id: dev.id,
        })
        .await
        .expect("remove");
    assert_status(
        as_owner
            .remove_member(pb::RemoveMemberRequest {
                customer_id: acme.id,
                user_id: dev.id,
            })
            .await,
        Code::NotFound,
        "is not a member",
    );
    // The removed member lost access at once.
    assert_status(
        server
            .customers(&dev.token)
            .get_customer(pb::GetCustomerRequest {
                customer_id: acme.id,
            })
            .await,
        Code::NotFound,
        "not found",
    );
}

async fn only_platform_admins_create_customers(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let owner = server.create_user("owner").await;
    server.add_member(acme.id, owner.id, pb::Role::Admin).await;
    assert_status(
        server
            .customers(&owner.token)
            .create_customer(pb::CreateCustomerRequest {
                name: "mine".into(),
                display_name: "Mine".into(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "only platform administrators may create customers",
    );
    let visible = server
        .admin_customers()
        .list_customers(pb::ListCustomersRequest::default())
        .await
        .expect("list")
        .into_inner()
        .customers;
    assert_eq!(visible.len(), 1, "nothing was created");
}

cygnet_testkit::backend_tests!(
    customer_create_get_update_list,
    deactivated_customer_is_readable_but_frozen,
    members_and_roles,
    only_platform_admins_create_customers,
);
