//! Every RPC of every service, called with random and extreme values in every field — by a member
//! of one customer and by strangers (no token, a forged one) — must answer without a panic,
//! without INTERNAL, and refuse with one of the precise codes a client can act on.
//!
//! The methods come from the file descriptor set the server serves for reflection; each needs a
//! line in `calls.rs`, so a new RPC without one fails this test. Request messages are generated
//! from the same descriptors (`messages.rs`) with a fixed seed and decoded into the generated
//! types, so every field of every request, nested ones included, gets odd values.
//!
//! Streams: server streams are opened and read for at most 300 ms (the first message or
//! the status), then dropped. The agent RPCs (`Connect`, `UploadArtifact`, `FetchArtifact`) are
//! called by the member with a registered agent's credential, so their messages reach the
//! session; `Connect` sends the random messages after opening and reads what comes back within
//! the same bound. No RPC is skipped.

mod calls;
mod messages;

use std::sync::{Mutex, Once};

use cygnet_proto::v1 as pb;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use tonic::Code;

use self::calls::{Caller, call};
use self::messages::{Aim, Method, Schema};
use crate::common::{Backend, TestOptions, TestServer};

/// Random requests per RPC from the member; strangers send [`STRANGER_CASES`] each.
const MEMBER_CASES: usize = 64;
const STRANGER_CASES: usize = 12;
/// How many calls of one RPC are in flight at once.
const IN_FLIGHT: usize = 8;
/// The generator's seed, so a failure repeats; each RPC mixes its path in (see [`seed_of`]), so
/// its cases do not depend on which RPCs run before it.
const SEED: [u8; 32] = *b"cygnet-fuzz-rpcs-seed-0000000001";

/// The seed of one RPC's cases: [`SEED`] with the path's FNV-1a hash folded in.
fn seed_of(path: &str) -> [u8; 32] {
    let hash = path.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut seed = SEED;
    for (byte, mixed) in seed.iter_mut().zip(hash.to_le_bytes()) {
        *byte ^= mixed;
    }
    seed
}

/// RPCs that may take the member's own access away; they run last.
const RUN_LAST: [&str; 6] = [
    "cygnet.v1.AgentService/DeleteAgent",
    "cygnet.v1.CustomerService/UpdateMember",
    "cygnet.v1.CustomerService/RemoveMember",
    "cygnet.v1.CustomerService/DeactivateCustomer",
    "cygnet.v1.UserService/DeactivateUser",
    "cygnet.v1.UserService/RevokeApiToken",
];

/// Panics in this process outside test code (the server runs in it), since the hook was set.
static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records every panic but those of test code (another test's failed assertion, run alongside,
/// is that test's failure, not the server's).
fn record_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_test_code = info.location().is_some_and(|location| {
                location.file().contains("tests/") || location.file().contains("testkit/")
            });
            if !in_test_code {
                PANICS
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .push(info.to_string());
            }
            previous(info);
        }));
    });
}

/// The one RPC a caller without a token may call: registration is authenticated by the
/// registration token inside the request.
const OPEN_RPCS: [&str; 1] = ["cygnet.v1.AgentService/RegisterAgent"];

/// Whether `code` is an answer a client can act on, for this caller and method. A stranger
/// learns nothing but UNAUTHENTICATED from an RPC that needs a token, whatever it sent
/// (authentication comes before validation), unless the message was too large to read.
fn precise(code: Code, caller: &Caller, method: &Method) -> bool {
    let stranger_told_more = !caller.is_member()
        && !OPEN_RPCS.contains(&method.path.as_str())
        && !matches!(
            code,
            Code::Unauthenticated | Code::ResourceExhausted | Code::OutOfRange
        );
    if stranger_told_more {
        return false;
    }
    match code {
        Code::Ok => caller.is_member(),
        Code::InvalidArgument
        | Code::NotFound
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::FailedPrecondition
        | Code::ResourceExhausted
        | Code::AlreadyExists
        | Code::OutOfRange => true,
        Code::Unimplemented => method.client_streaming,
        _ => false,
    }
}

/// A few records in the member's customer, so that small ids name something and requests reach
/// the code that reads and changes it.
async fn seed_records(server: &TestServer, customer_id: i64) {
    let pipeline = server
        .create_pipeline(
            customer_id,
            "build",
            vec![crate::common::step("build", "true")],
            vec![],
        )
        .await;
    server.run_pipeline(customer_id, pipeline.id, &[]).await;
    server
        .create_monitor(pb::CreateMonitorRequest {
            customer_id,
            name: "database".into(),
            kind: pb::MonitorKind::Tcp.into(),
            target: "tcp://127.0.0.1:9".into(),
            ..Default::default()
        })
        .await;
    server
        .variables(crate::common::ADMIN_TOKEN)
        .create_variable_group(pb::CreateVariableGroupRequest {
            customer_id,
            name: "shared".into(),
            ..Default::default()
        })
        .await
        .expect("a variable group");
}

async fn every_rpc_answers_bad_input_precisely(backend: Backend) {
    record_panics();
    let server = TestServer::start_with(
        backend,
        TestOptions {
            rate_limits: cygnet_server::config::RateLimits {
                requests_per_minute_per_token: 1_000_000,
                requests_per_minute_per_address: 1_000_000,
                ..Default::default()
            },
            ..TestOptions::default()
        },
    )
    .await;
    let acme = server.create_customer("acme").await;
    let owner = server.create_user("owner").await;
    server.add_member(acme.id, owner.id, pb::Role::Admin).await;
    let registration = server.create_registration_token(acme.id).await;
    let agent = server
        .register_agent(acme.id, "fuzz-agent", &registration)
        .await
        .expect("the agent registers");
    seed_records(&server, acme.id).await;
    let member = Caller::Member {
        token: owner.token.clone(),
        agent_uuid: "fuzz-agent".into(),
        agent_credential: agent.credential.clone(),
    };
    // Half the cases odd in one field or two (reaching past validation), half odd throughout.
    let mostly_plain = Aim {
        customer_id: acme.id,
        odd_in_ten: 1,
    };
    let odd_throughout = Aim {
        customer_id: acme.id,
        odd_in_ten: 6,
    };

    let schema = Schema::load();
    let mut methods = schema.methods.clone();
    assert!(methods.len() >= 80, "the descriptor lists every RPC");
    methods.sort_by_key(|method| RUN_LAST.contains(&method.path.as_str()));
    // `CYGNET_FUZZ_ONLY=Service/Method` narrows a run to the RPCs whose path contains it.
    if let Ok(only) = std::env::var("CYGNET_FUZZ_ONLY") {
        methods.retain(|method| method.path.contains(&only));
    }
    let mut failures = Vec::new();
    // What the member's calls answered, per RPC: printed, to see how deep the cases reach.
    let mut member_codes: Vec<(String, std::collections::BTreeMap<String, usize>)> = Vec::new();
    let started = std::time::Instant::now();
    for method in &methods {
        let mut runner = TestRunner::new_with_rng(
            Config::default(),
            TestRng::from_seed(RngAlgorithm::ChaCha, &seed_of(&method.path)),
        );
        let request = |aim| schema.message(&method.input_type, aim, 0);
        let bodies = proptest::prop_oneof![
            proptest::collection::vec(request(mostly_plain), 1..=3),
            proptest::collection::vec(request(odd_throughout), 1..=3),
        ];
        let callers = std::iter::repeat_n(member.clone(), MEMBER_CASES)
            .chain(std::iter::repeat_n(Caller::NoToken, STRANGER_CASES))
            .chain(std::iter::repeat_n(Caller::ForgedToken, STRANGER_CASES));
        let cases: Vec<(Caller, Vec<Vec<u8>>)> = callers
            .map(|caller| {
                let tree = bodies.new_tree(&mut runner).expect("a request");
                (caller, tree.current())
            })
            .collect();
        // One agent stream at a time: a second one would end the first (ABORTED).
        let in_flight = if method.client_streaming && method.server_streaming {
            1
        } else {
            IN_FLIGHT
        };
        let mut codes = std::collections::BTreeMap::new();
        for chunk in cases.chunks(in_flight) {
            let mut handles = Vec::new();
            for (caller, bodies) in chunk {
                let handle = call(
                    server.channel(),
                    &method.path,
                    bodies.clone(),
                    caller.clone(),
                );
                let Some(handle) = handle else {
                    panic!("{} has no case in fuzz_rpcs/calls.rs; add one", method.path);
                };
                handles.push((caller, bodies, handle));
            }
            for (caller, bodies, handle) in handles {
                let outcome = handle.await;
                let code = match &outcome {
                    Ok(Ok(())) => Code::Ok,
                    Ok(Err(status)) => status.code(),
                    Err(join_error) => {
                        failures.push(format!(
                            "{}: the client task failed: {join_error}",
                            method.path
                        ));
                        continue;
                    }
                };
                if caller.is_member() {
                    *codes.entry(format!("{code:?}")).or_insert(0) += 1;
                }
                if !precise(code, caller, method) {
                    let who = match caller {
                        Caller::Member { .. } => "member",
                        Caller::NoToken => "no token",
                        Caller::ForgedToken => "forged token",
                    };
                    let message = match &outcome {
                        Ok(Err(status)) => status.message().to_owned(),
                        _ => String::new(),
                    };
                    let sizes: Vec<usize> = bodies.iter().map(Vec::len).collect();
                    failures.push(format!(
                        "{} as {who}: {code:?} {message:?} (request bytes {sizes:?}, first {:?})",
                        method.path,
                        &bodies[0][..bodies[0].len().min(200)]
                    ));
                }
            }
        }
        member_codes.push((method.path.clone(), codes));
    }
    for (path, codes) in &member_codes {
        eprintln!("fuzz_rpcs: {path}: {codes:?}");
    }
    let panics = PANICS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    assert!(panics.is_empty(), "panics: {panics:#?}");
    assert!(
        failures.is_empty(),
        "{} imprecise answers:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // The server still answers.
    server
        .admin_users()
        .get_current_user(pb::GetCurrentUserRequest {})
        .await
        .expect("the server answers after the fuzzing");
    eprintln!(
        "fuzz_rpcs: {} RPCs, {} calls each, in {:?}",
        methods.len(),
        MEMBER_CASES + 2 * STRANGER_CASES,
        started.elapsed()
    );
}

cygnet_testkit::backend_tests!(every_rpc_answers_bad_input_precisely);
