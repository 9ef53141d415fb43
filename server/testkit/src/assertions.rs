//! Assertions on calls and on what a watch received, and polling for what the server does on its
//! own schedule.

use cygnet_proto::v1 as pb;
use tonic::{Code, Status};

/// Asserts a call failed with `code` and a message containing `fragment`.
#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, fragment: &str) {
    match result {
        Ok(value) => panic!("expected {code:?} containing {fragment:?}, got Ok({value:?})"),
        Err(status) => {
            assert_eq!(status.code(), code, "status {status:?}");
            assert!(
                status.message().contains(fragment),
                "message {:?} should contain {fragment:?}",
                status.message()
            );
        }
    }
}

/// Asserts `rpc` failed with INVALID_ARGUMENT and a message that starts with the field's name.
#[track_caller]
pub fn assert_invalid<T: std::fmt::Debug>(rpc: &str, result: Result<T, Status>, field: &str) {
    match result {
        Ok(value) => panic!("{rpc}: expected INVALID_ARGUMENT naming {field}, got {value:?}"),
        Err(status) => {
            assert_eq!(status.code(), Code::InvalidArgument, "{rpc}: {status:?}");
            assert!(
                status.message().starts_with(field),
                "{rpc}: message {:?} should name {field}",
                status.message()
            );
        }
    }
}

/// The text of every log update, in order.
pub fn log_text(updates: &[pb::watch_execution_response::Update]) -> String {
    updates
        .iter()
        .filter_map(|update| match update {
            pb::watch_execution_response::Update::Log(chunk) => Some(chunk.text.as_str()),
            _ => None,
        })
        .collect()
}

/// The final execution of a watch.
pub fn final_execution(updates: &[pb::watch_execution_response::Update]) -> pb::Execution {
    updates
        .iter()
        .rev()
        .find_map(|update| match update {
            pb::watch_execution_response::Update::Execution(execution) => Some(execution.clone()),
            _ => None,
        })
        .expect("an execution update")
}

/// Polls `check` until it holds or `within` passes (then panics naming `what`). For conditions
/// that become true on the server's own schedule (heartbeat intervals), which a test can only
/// observe.
pub async fn eventually<F, Fut>(what: &str, within: std::time::Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}
