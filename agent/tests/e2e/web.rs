//! The web dashboard in a real browser: the demo (real server, real agents, the seed's three
//! customers) serves it, and `web-tests/dashboard.test.mjs` drives Debian's Chromium through it
//! with playwright-core. This test prepares what the script needs through the gRPC API (a
//! viewer at Acme, a slow pipeline, another customer's execution id), runs it and stops the demo.
//!
//! Without Chromium or `web-tests/node_modules` the test says so and passes, unless
//! `CYGNET_REQUIRE_BROWSER` is set (`.ci/run` sets it and installs both).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use cygnet_proto::Bearer;
use cygnet_proto::v1 as pb;
use pb::customer_service_client::CustomerServiceClient;
use pb::pipeline_service_client::PipelineServiceClient;
use pb::user_service_client::UserServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

const CHROMIUM: &str = "/usr/bin/chromium";

fn web_tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../web-tests")
}

/// Whether the browser test can run here; panics when it must and cannot.
fn browser_available() -> bool {
    let missing: Vec<&str> = [
        (!Path::new(CHROMIUM).is_file()).then_some("chromium (apt-get install chromium)"),
        (!web_tests_dir()
            .join("node_modules/playwright-core")
            .is_dir())
        .then_some("web-tests/node_modules (npm ci --prefix web-tests)"),
        Command::new("node")
            .arg("--version")
            .output()
            .is_err()
            .then_some("node"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("CYGNET_REQUIRE_BROWSER").is_none(),
        "CYGNET_REQUIRE_BROWSER is set but these are missing: {}",
        missing.join(", ")
    );
    eprintln!(
        "SKIPPED the browser test: missing {} (set CYGNET_REQUIRE_BROWSER=1 to make this a failure)",
        missing.join(", ")
    );
    false
}

/// The running demo; interrupted (as by Ctrl-C) when dropped, so its agents stop too.
struct Demo {
    child: Child,
    grpc: String,
    web: String,
    customers: Vec<(String, i64)>,
    tokens: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

impl Demo {
    fn start() -> Demo {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = dir.path().join("demo");
        let mut child = Command::new(crate::demo::demo_binary())
            .args([
                "--listen",
                "127.0.0.1:0",
                "--web-listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(&data_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the demo");
        let stdout = child.stdout.take().expect("stdout");
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let (mut web, mut customers) = (String::new(), Vec::new());
        let grpc = loop {
            let line = received
                .recv_timeout(Duration::from_secs(120))
                .expect("the demo prints 'Serving on …' within two minutes");
            if let Some(rest) = line.strip_prefix("Dashboard: http://") {
                web = format!("http://{}", rest.split('/').next().unwrap_or_default());
            } else if let Some(rest) = line.strip_prefix("Serving on ") {
                break rest.split(' ').next().unwrap_or_default().to_owned();
            } else if let Some((name, id)) = line
                .strip_suffix(')')
                .and_then(|line| line.rsplit_once(" (customer "))
            {
                customers.push((name.to_owned(), id.parse().expect("customer id")));
            }
        };
        // Keep draining stdout so the demo never blocks on a full pipe.
        std::thread::spawn(move || while received.recv().is_ok() {});
        let tokens = std::fs::read_to_string(data_dir.join("tokens.txt"))
            .expect("tokens file")
            .lines()
            .filter_map(|line| line.split_once('\t'))
            .map(|(who, token)| {
                let user = who.split(' ').next().unwrap_or_default().to_owned();
                (user, token.to_owned())
            })
            .collect();
        Demo {
            child,
            grpc,
            web,
            customers,
            tokens,
            _dir: dir,
        }
    }

    fn token(&self, user: &str) -> String {
        self.tokens
            .iter()
            .find(|(name, _)| name == user)
            .map(|(_, token)| token.clone())
            .unwrap_or_else(|| panic!("no token for {user}"))
    }

    fn customer(&self, name: &str) -> i64 {
        self.customers
            .iter()
            .find(|(customer, _)| customer == name)
            .map(|(_, id)| *id)
            .unwrap_or_else(|| panic!("no customer {name}"))
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGINT,
            );
        }
        let _ = self.child.wait();
    }
}

type Authed = InterceptedService<Channel, Bearer>;

struct Admin {
    users: UserServiceClient<Authed>,
    customers: CustomerServiceClient<Authed>,
    pipelines: PipelineServiceClient<Authed>,
}

impl Admin {
    async fn connect(address: &str, token: &str) -> Admin {
        let channel = Channel::from_shared(format!("http://{address}"))
            .expect("address")
            .connect()
            .await
            .expect("connect to the demo");
        let bearer = || Bearer::new(token).expect("token");
        Admin {
            users: UserServiceClient::with_interceptor(channel.clone(), bearer()),
            customers: CustomerServiceClient::with_interceptor(channel.clone(), bearer()),
            pipelines: PipelineServiceClient::with_interceptor(channel, bearer()),
        }
    }
}

/// A viewer at `customer_id`; returns their token.
async fn add_viewer(admin: &mut Admin, customer_id: i64) -> String {
    let user = admin
        .users
        .create_user(pb::CreateUserRequest {
            username: "viewer.acme".into(),
            email: "viewer@acme.example".into(),
            full_name: "Acme viewer".into(),
            is_superuser: false,
        })
        .await
        .expect("create the viewer")
        .into_inner()
        .user
        .expect("user");
    admin
        .customers
        .add_member(pb::AddMemberRequest {
            customer_id,
            user_id: user.id,
            role: pb::Role::Viewer as i32,
        })
        .await
        .expect("add the viewer");
    admin
        .users
        .create_api_token(pb::CreateApiTokenRequest {
            name: "browser test".into(),
            user_id: user.id,
            expires_at: None,
        })
        .await
        .expect("viewer token")
        .into_inner()
        .secret
}

/// A pipeline whose output arrives over a few seconds (and includes markup that must show as
/// text), on Acme's staging agent.
async fn add_slow_pipeline(admin: &mut Admin, customer_id: i64) -> i64 {
    admin
        .pipelines
        .create_pipeline(pb::CreatePipelineRequest {
            customer_id,
            name: "Slow Build".into(),
            description: "Prints a line, waits PAUSE seconds, prints another".into(),
            agent_selector: Some(pb::AgentSelector {
                agent_id: 0,
                labels: vec!["staging".into()],
            }),
            steps: vec![pb::Step {
                name: "Slow".into(),
                command: "echo 'first line <script>window.pwned=1</script>'; sleep {{PAUSE}}; echo 'second line'".into(),
                ..Default::default()
            }],
            parameters: vec![pb::Parameter {
                name: "PAUSE".into(),
                r#type: pb::ParameterType::Number as i32,
                default_value: "3".into(),
                required: true,
                description: "seconds between the lines".into(),
                choices: vec![],
            }],
            timeout_seconds: 300,
            variable_group_ids: vec![],
        })
        .await
        .expect("create Slow Build")
        .into_inner()
        .pipeline
        .expect("pipeline")
        .id
}

async fn an_execution_of(admin: &mut Admin, customer_id: i64) -> i64 {
    admin
        .pipelines
        .list_executions(pb::ListExecutionsRequest {
            customer_id,
            page_size: 1,
            ..Default::default()
        })
        .await
        .expect("list executions")
        .into_inner()
        .executions
        .first()
        .expect("an execution")
        .id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_works_in_a_real_browser() {
    if !browser_available() {
        return;
    }
    let demo = tokio::task::spawn_blocking(Demo::start)
        .await
        .expect("demo");
    let acme = demo.customer("Acme Corporation");
    let techstart = demo.customer("TechStart Inc");
    let mut admin = Admin::connect(&demo.grpc, &demo.token("admin")).await;
    let viewer = add_viewer(&mut admin, acme).await;
    let slow = add_slow_pipeline(&mut admin, acme).await;
    let foreign_execution = an_execution_of(&mut admin, techstart).await;
    let screenshot =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/web-tests/dashboard.png");
    std::fs::create_dir_all(screenshot.parent().expect("dir")).expect("screenshot dir");

    let output = tokio::process::Command::new("node")
        .arg("dashboard.test.mjs")
        .current_dir(web_tests_dir())
        .env("CYGNET_WEB_URL", &demo.web)
        .env("CYGNET_CHROMIUM", CHROMIUM)
        .env("CYGNET_ACME", acme.to_string())
        .env("CYGNET_TECHSTART", techstart.to_string())
        .env("CYGNET_SLOW_PIPELINE", slow.to_string())
        .env("CYGNET_FOREIGN_EXECUTION", foreign_execution.to_string())
        .env("CYGNET_CONSULTANT_TOKEN", demo.token("consultant"))
        .env("CYGNET_OPS_TOKEN", demo.token("ops.acme"))
        .env("CYGNET_VIEWER_TOKEN", &viewer)
        .env("CYGNET_SCREENSHOT", &screenshot)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}"
    );
    assert!(
        screenshot.is_file(),
        "no screenshot at {}",
        screenshot.display()
    );
    drop(demo);
}

/// The dashboard as a workplace (`web-tests/manage.test.mjs`): a fresh server, two users with
/// no customer yet, and the agent binary the page's appsettings.json starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workplace_works_in_a_real_browser() {
    if !browser_available() {
        return;
    }
    let server = cygnet_testkit::TestServer::start_with(
        cygnet_testkit::Backend::Sqlite,
        cygnet_testkit::TestOptions {
            web: true,
            ..crate::common::one_second_heartbeats()
        },
    )
    .await;
    let web = server.web_address.expect("web on");
    let dev = server.create_user("dev1").await;
    let viewer = server.create_user("viewer1").await;
    let work = tempfile::tempdir().expect("work dir");
    let screenshots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/web-tests/workplace");
    let output = tokio::process::Command::new("node")
        .arg("manage.test.mjs")
        .current_dir(web_tests_dir())
        .env("CYGNET_WEB_URL", format!("http://{web}"))
        .env("CYGNET_CHROMIUM", CHROMIUM)
        .env("CYGNET_ADMIN_TOKEN", cygnet_testkit::ADMIN_TOKEN)
        .env("CYGNET_DEV_TOKEN", &dev.token)
        .env("CYGNET_VIEWER_TOKEN", &viewer.token)
        .env("CYGNET_AGENT_BIN", crate::common::AGENT)
        .env("CYGNET_WORK", work.path())
        .env("CYGNET_SCREENSHOTS", &screenshots)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}"
    );
    for page in [
        "welcome",
        "members",
        "token",
        "agents",
        "execution",
        "customers",
    ] {
        for width in ["desktop", "phone"] {
            let shot = screenshots.join(format!("{page}-{width}.png"));
            assert!(shot.is_file(), "no screenshot at {}", shot.display());
        }
    }
}
