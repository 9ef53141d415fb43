//! First start creates the platform administrator exactly once.

use cygnet_proto::v1 as pb;
use tonic::Code;

use crate::common::{Backend, TestOptions, TestServer, assert_status};

async fn generated_token_is_written_privately_and_survives_restart(backend: Backend) {
    let mut server = TestServer::start_with(
        backend,
        TestOptions {
            generated_admin_token: true,
            ..TestOptions::default()
        },
    )
    .await;
    let token_file = server.data_dir.join("admin.token");
    let token = std::fs::read_to_string(&token_file).expect("admin.token written");
    let token = token.trim().to_owned();
    assert!(token.starts_with("cyg_"), "{token}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "admin.token must be private");
    }
    let me = server
        .users(&token)
        .get_current_user(pb::GetCurrentUserRequest {})
        .await
        .expect("bootstrap token authenticates")
        .into_inner();
    let admin = me.user.expect("user");
    assert_eq!(admin.username, "admin");
    assert!(admin.is_superuser);
    assert!(me.memberships.is_empty());
    assert_eq!(me.default_customer_id, 0);

    // A restart on the same database keeps the admin and its token, and creates nobody.
    server.restart().await;
    let users = server
        .users(&token)
        .list_users(pb::ListUsersRequest::default())
        .await
        .expect("token still valid after restart")
        .into_inner()
        .users;
    assert_eq!(users.len(), 1, "no second admin");
    assert_eq!(
        std::fs::read_to_string(&token_file)
            .expect("file kept")
            .trim(),
        token,
        "token file is not rewritten"
    );
}

async fn configured_token_is_used_and_no_file_is_written(backend: Backend) {
    let server = TestServer::start(backend).await;
    let me = server
        .admin_users()
        .get_current_user(pb::GetCurrentUserRequest {})
        .await
        .expect("configured token authenticates")
        .into_inner();
    assert!(me.user.expect("user").is_superuser);
    assert!(!server.data_dir.join("admin.token").exists());
    assert_status(
        server
            .users("cyg_not-the-token")
            .get_current_user(pb::GetCurrentUserRequest {})
            .await,
        Code::Unauthenticated,
        "token is not valid",
    );
}

cygnet_testkit::backend_tests!(
    generated_token_is_written_privately_and_survives_restart,
    configured_token_is_used_and_no_file_is_written,
);
