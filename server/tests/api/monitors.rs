//! MonitorService at the API: monitors are handed to the customer's online agents over their
//! stream, what the agents report becomes status, history and activity, bad input is refused
//! naming the field, and no customer sees another's monitors. The real agent running real
//! checks is in the agent's e2e tests.

use std::time::Duration;

use cygnet_proto::v1 as pb;
use tokio::sync::{mpsc, watch};
use tonic::Code;

use crate::common::{Backend, TestServer, assert_invalid, assert_status, eventually, heartbeat};

const WITHIN: Duration = Duration::from_secs(10);

/// A protocol-level agent that finishes every job at once (failed when a step's command is
/// `false`), publishes the monitor assignments it receives, and sends the reports it is told to.
pub struct ScriptedAgent {
    pub agent_id: i64,
    pub assignments: watch::Receiver<Vec<pb::MonitorCheck>>,
    sender: mpsc::Sender<pb::ConnectRequest>,
    task: tokio::task::JoinHandle<()>,
}

impl ScriptedAgent {
    pub async fn connect(server: &TestServer, customer_id: i64, uuid: &str) -> ScriptedAgent {
        let token = server.create_registration_token(customer_id).await;
        let registered = server
            .register_agent(customer_id, uuid, &token)
            .await
            .expect("register");
        let agent = server
            .connect_agent(uuid, &registered.credential)
            .await
            .expect("connect");
        let (publish, assignments) = watch::channel(Vec::new());
        let sender = agent.sender.clone();
        let mut inbound = agent.inbound;
        let replies = agent.sender;
        let task = tokio::spawn(async move {
            while let Ok(Some(message)) = inbound.message().await {
                match message.command {
                    Some(pb::connect_response::Command::AssignMonitors(assignment)) => {
                        publish.send_replace(assignment.monitors);
                    }
                    Some(pb::connect_response::Command::AssignJob(job)) => {
                        let failed = job.steps.iter().any(|step| step.command == "false");
                        let finished = pb::JobFinished {
                            status: if failed {
                                pb::ExecutionStatus::Failed
                            } else {
                                pb::ExecutionStatus::Succeeded
                            }
                            .into(),
                            reason: if failed {
                                "exit status 1".into()
                            } else {
                                String::new()
                            },
                        };
                        let events = [
                            pb::job_event::Event::Started(pb::JobStarted {
                                workspace: "/tmp/scripted".into(),
                            }),
                            pb::job_event::Event::Finished(finished),
                        ];
                        for (index, event) in events.into_iter().enumerate() {
                            let event = pb::JobEvent {
                                execution_id: job.execution_id,
                                sequence: index as i64 + 1,
                                occurred_at: None,
                                event: Some(event),
                            };
                            let message = pb::ConnectRequest {
                                message: Some(pb::connect_request::Message::JobEvent(event)),
                            };
                            if replies.send(message).await.is_err() {
                                return;
                            }
                        }
                    }
                    _ => {}
                }
            }
        });
        ScriptedAgent {
            agent_id: registered.agent_id,
            assignments,
            sender,
            task,
        }
    }

    /// Waits until the agent's assigned monitors are exactly `monitor_ids` (in any order).
    pub async fn wait_for_monitors(&mut self, monitor_ids: &[i64]) -> Vec<pb::MonitorCheck> {
        let mut wanted = monitor_ids.to_vec();
        wanted.sort_unstable();
        let agent_id = self.agent_id;
        let mut assignments = self.assignments.clone();
        let found = tokio::time::timeout(
            WITHIN,
            assignments.wait_for(|checks| {
                let mut ids: Vec<i64> = checks.iter().map(|check| check.monitor_id).collect();
                ids.sort_unstable();
                ids == wanted
            }),
        )
        .await;
        match found {
            Ok(Ok(checks)) => checks.clone(),
            Ok(Err(_)) => panic!("agent {agent_id}: stream closed"),
            Err(_) => panic!(
                "agent {agent_id} never got monitors {wanted:?}; last assignment: {:?}",
                *self.assignments.borrow()
            ),
        }
    }

    /// Reports one check result, as the agent does after a check.
    pub async fn report(&self, monitor_id: i64, up: bool, response_ms: i64, message: &str) {
        let report = pb::MonitorReport {
            monitor_id,
            checked_at: Some(std::time::SystemTime::now().into()),
            up,
            response_ms,
            http_status: if message.starts_with("HTTP") { 200 } else { 0 },
            message: message.into(),
        };
        self.sender
            .send(pb::ConnectRequest {
                message: Some(pb::connect_request::Message::MonitorReport(report)),
            })
            .await
            .expect("stream open");
    }

    pub async fn heartbeat(&self) {
        self.sender
            .send(pb::ConnectRequest {
                message: Some(pb::connect_request::Message::Heartbeat(heartbeat(
                    10.0, 20.0,
                ))),
            })
            .await
            .expect("stream open");
    }

    /// Closes the stream, as a stopped agent does.
    pub fn disconnect(self) {
        self.task.abort();
    }
}

pub fn http_monitor(customer_id: i64, name: &str, target: &str) -> pb::CreateMonitorRequest {
    pb::CreateMonitorRequest {
        customer_id,
        name: name.into(),
        kind: pb::MonitorKind::Http.into(),
        target: target.into(),
        ..Default::default()
    }
}

pub fn tcp_monitor(customer_id: i64, name: &str, target: &str) -> pb::CreateMonitorRequest {
    pb::CreateMonitorRequest {
        customer_id,
        name: name.into(),
        kind: pb::MonitorKind::Tcp.into(),
        target: target.into(),
        ..Default::default()
    }
}

async fn monitors_are_created_with_defaults_read_changed_and_deleted(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let mut admin = server.admin_monitors();

    let api = server
        .create_monitor(http_monitor(acme.id, "API", "https://api.acme.com/health"))
        .await;
    assert_eq!(
        (
            api.customer_id,
            api.kind,
            api.target.as_str(),
            api.interval_seconds,
            api.timeout_ms,
            api.warning_threshold_ms,
            api.expected_status,
            api.status,
            api.assigned_agent_id,
        ),
        (
            acme.id,
            pb::MonitorKind::Http as i32,
            "https://api.acme.com/health",
            60,
            5000,
            1000,
            0,
            pb::MonitorStatus::Unknown as i32,
            0,
        )
    );
    assert!(api.last_checked_at.is_none());
    assert_eq!(api.uptime_percent_24h, 0.0);
    let database = server
        .create_monitor(pb::CreateMonitorRequest {
            interval_seconds: 30,
            timeout_ms: 400,
            ..tcp_monitor(acme.id, "Database", "postgres://acme-db")
        })
        .await;
    // A threshold above a short timeout defaults to the timeout.
    assert_eq!(database.warning_threshold_ms, 400);

    let listed = admin
        .list_monitors(pb::ListMonitorsRequest {
            customer_id: acme.id,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .monitors;
    assert_eq!(
        listed.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        ["API", "Database"]
    );
    let unknown = admin
        .list_monitors(pb::ListMonitorsRequest {
            customer_id: acme.id,
            status: pb::MonitorStatus::Down.into(),
            ..Default::default()
        })
        .await
        .expect("list down")
        .into_inner()
        .monitors;
    assert!(unknown.is_empty());

    let updated = admin
        .update_monitor(pb::UpdateMonitorRequest {
            customer_id: acme.id,
            monitor_id: api.id,
            name: Some("Public API".into()),
            interval_seconds: Some(15),
            expected_status: Some(204),
            ..Default::default()
        })
        .await
        .expect("update")
        .into_inner()
        .monitor
        .expect("monitor");
    assert_eq!(
        (
            updated.name.as_str(),
            updated.interval_seconds,
            updated.expected_status,
            updated.timeout_ms
        ),
        ("Public API", 15, 204, 5000)
    );
    assert_status(
        admin
            .update_monitor(pb::UpdateMonitorRequest {
                customer_id: acme.id,
                monitor_id: database.id,
                name: Some("Public API".into()),
                ..Default::default()
            })
            .await,
        Code::AlreadyExists,
        "Public API",
    );

    admin
        .delete_monitor(pb::DeleteMonitorRequest {
            customer_id: acme.id,
            monitor_id: api.id,
        })
        .await
        .expect("delete");
    assert_status(
        admin
            .get_monitor(pb::GetMonitorRequest {
                customer_id: acme.id,
                monitor_id: api.id,
            })
            .await,
        Code::NotFound,
        "monitor",
    );
}

async fn bad_monitor_input_is_refused_naming_the_field_and_writes_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let mut admin = server.admin_monitors();
    let http = |target: &str| http_monitor(acme.id, "Checked", target);
    let tcp = |target: &str| tcp_monitor(acme.id, "Checked", target);
    let cases: Vec<(pb::CreateMonitorRequest, &str)> = vec![
        (http("ftp://files.acme.com/"), "target"),
        (http("api.acme.com/health"), "target"),
        (http("http:///health"), "target"),
        (http("https://user:secret@api.acme.com/"), "target"),
        (tcp("acme-db"), "target"),
        (tcp("ftp://acme-db"), "target"),
        (tcp("postgres://:5432"), "target"),
        (tcp("acme-db:0"), "target"),
        (tcp("acme-db:70000"), "target"),
        (tcp(""), "target"),
        (
            pb::CreateMonitorRequest {
                name: String::new(),
                ..tcp("acme-db:5432")
            },
            "name",
        ),
        (
            pb::CreateMonitorRequest {
                kind: pb::MonitorKind::Unspecified.into(),
                ..tcp("acme-db:5432")
            },
            "kind",
        ),
        (
            pb::CreateMonitorRequest {
                kind: 42,
                ..tcp("acme-db:5432")
            },
            "kind",
        ),
        (
            pb::CreateMonitorRequest {
                interval_seconds: 5,
                ..tcp("acme-db:5432")
            },
            "interval_seconds",
        ),
        (
            pb::CreateMonitorRequest {
                interval_seconds: -1,
                ..tcp("acme-db:5432")
            },
            "interval_seconds",
        ),
        (
            pb::CreateMonitorRequest {
                timeout_ms: 50,
                ..tcp("acme-db:5432")
            },
            "timeout_ms",
        ),
        (
            pb::CreateMonitorRequest {
                timeout_ms: 1000,
                warning_threshold_ms: 2000,
                ..tcp("acme-db:5432")
            },
            "warning_threshold_ms",
        ),
        (
            pb::CreateMonitorRequest {
                expected_status: 200,
                ..tcp("acme-db:5432")
            },
            "expected_status",
        ),
        (
            pb::CreateMonitorRequest {
                expected_status: 42,
                ..http("https://api.acme.com/health")
            },
            "expected_status",
        ),
    ];
    for (request, field) in cases {
        let described = format!("CreateMonitor {:?}", request.target);
        assert_invalid(&described, admin.create_monitor(request).await, field);
    }
    let nothing = admin
        .list_monitors(pb::ListMonitorsRequest {
            customer_id: acme.id,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .monitors;
    assert!(
        nothing.is_empty(),
        "refused monitors were written: {nothing:?}"
    );

    // Updates are checked against the monitor as it would become.
    let database = server
        .create_monitor(tcp_monitor(acme.id, "Database", "postgres://acme-db"))
        .await;
    let update = || pb::UpdateMonitorRequest {
        customer_id: acme.id,
        monitor_id: database.id,
        ..Default::default()
    };
    for (request, field) in [
        (
            pb::UpdateMonitorRequest {
                warning_threshold_ms: Some(9000),
                ..update()
            },
            "warning_threshold_ms",
        ),
        (
            pb::UpdateMonitorRequest {
                target: Some("https://acme-db/".into()),
                ..update()
            },
            "target",
        ),
        (
            pb::UpdateMonitorRequest {
                interval_seconds: Some(0),
                ..update()
            },
            "interval_seconds",
        ),
        (
            pb::UpdateMonitorRequest {
                monitor_id: 0,
                ..update()
            },
            "monitor_id",
        ),
    ] {
        assert_invalid("UpdateMonitor", admin.update_monitor(request).await, field);
    }
    assert_eq!(server.monitor(acme.id, database.id).await, database);
    assert_invalid(
        "GetMonitorHistory",
        admin
            .get_monitor_history(pb::GetMonitorHistoryRequest {
                customer_id: acme.id,
                monitor_id: database.id,
                start_time: Some(std::time::SystemTime::now().into()),
                end_time: Some((std::time::SystemTime::now() - Duration::from_secs(3600)).into()),
                ..Default::default()
            })
            .await,
        "start_time",
    );
}

async fn members_read_monitors_and_only_some_roles_change_them(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let other = server.create_customer("techstart").await;
    let viewer = server.create_user("viewer").await;
    server
        .add_member(acme.id, viewer.id, pb::Role::Viewer)
        .await;
    let developer = server.create_user("developer").await;
    server
        .add_member(acme.id, developer.id, pb::Role::Developer)
        .await;
    let outsider = server.create_user("outsider").await;
    server
        .add_member(other.id, outsider.id, pb::Role::Admin)
        .await;

    let created = server
        .monitors(&developer.token)
        .create_monitor(tcp_monitor(acme.id, "Cache", "redis://acme-cache"))
        .await
        .expect("a developer creates monitors")
        .into_inner()
        .monitor
        .expect("monitor");
    assert!(created.created_by == developer.id);

    let mut viewer_client = server.monitors(&viewer.token);
    viewer_client
        .get_monitor(pb::GetMonitorRequest {
            customer_id: acme.id,
            monitor_id: created.id,
        })
        .await
        .expect("a viewer reads monitors");
    assert_status(
        viewer_client
            .create_monitor(tcp_monitor(acme.id, "Other", "acme-db:5432"))
            .await,
        Code::PermissionDenied,
        "",
    );
    assert_status(
        viewer_client
            .delete_monitor(pb::DeleteMonitorRequest {
                customer_id: acme.id,
                monitor_id: created.id,
            })
            .await,
        Code::PermissionDenied,
        "",
    );

    // Another customer's admin: the customer does not exist for them, nor does the monitor
    // under their own customer's id.
    let mut outsider_client = server.monitors(&outsider.token);
    assert_status(
        outsider_client
            .get_monitor(pb::GetMonitorRequest {
                customer_id: acme.id,
                monitor_id: created.id,
            })
            .await,
        Code::NotFound,
        "customer",
    );
    for result in [
        outsider_client
            .get_monitor(pb::GetMonitorRequest {
                customer_id: other.id,
                monitor_id: created.id,
            })
            .await
            .map(|_| ()),
        outsider_client
            .delete_monitor(pb::DeleteMonitorRequest {
                customer_id: other.id,
                monitor_id: created.id,
            })
            .await
            .map(|_| ()),
        outsider_client
            .get_monitor_history(pb::GetMonitorHistoryRequest {
                customer_id: other.id,
                monitor_id: created.id,
                ..Default::default()
            })
            .await
            .map(|_| ()),
    ] {
        assert_status(result, Code::NotFound, "monitor");
    }
    let theirs = outsider_client
        .list_monitors(pb::ListMonitorsRequest {
            customer_id: other.id,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .monitors;
    assert!(theirs.is_empty());
    assert_eq!(server.monitor(acme.id, created.id).await, created);
}

async fn agents_run_the_checks_and_their_reports_become_status_history_and_activity(
    backend: Backend,
) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let other = server.create_customer("techstart").await;
    let api = server
        .create_monitor(pb::CreateMonitorRequest {
            warning_threshold_ms: 200,
            ..http_monitor(acme.id, "Build API", "https://api.acme.com/health")
        })
        .await;
    let mut agent = ScriptedAgent::connect(&server, acme.id, "acme-prod-001").await;
    let checks = agent.wait_for_monitors(&[api.id]).await;
    assert_eq!(
        checks[0],
        pb::MonitorCheck {
            monitor_id: api.id,
            kind: pb::MonitorKind::Http.into(),
            target: "https://api.acme.com/health".into(),
            interval_seconds: 60,
            timeout_ms: 5000,
            expected_status: 0,
        }
    );
    let assigned = server.monitor(acme.id, api.id).await;
    assert_eq!(assigned.assigned_agent_id, agent.agent_id);

    agent.report(api.id, true, 45, "HTTP 200").await;
    let healthy = server
        .wait_for_monitor_status(acme.id, api.id, pb::MonitorStatus::Healthy, WITHIN)
        .await;
    assert_eq!(
        (healthy.last_response_ms, healthy.last_message.as_str()),
        (45, "HTTP 200")
    );
    assert!(healthy.last_checked_at.is_some());
    agent.report(api.id, true, 60, "HTTP 200").await;
    agent.report(api.id, true, 850, "HTTP 200").await;
    server
        .wait_for_monitor_status(acme.id, api.id, pb::MonitorStatus::Warning, WITHIN)
        .await;
    agent.report(api.id, false, 0, "connection refused").await;
    let down = server
        .wait_for_monitor_status(acme.id, api.id, pb::MonitorStatus::Down, WITHIN)
        .await;
    assert_eq!(
        (down.last_response_ms, down.last_message.as_str()),
        (0, "connection refused")
    );
    assert_eq!(down.uptime_percent_24h, 75.0);

    let history = server
        .admin_monitors()
        .get_monitor_history(pb::GetMonitorHistoryRequest {
            customer_id: acme.id,
            monitor_id: api.id,
            ..Default::default()
        })
        .await
        .expect("history")
        .into_inner()
        .results;
    let statuses: Vec<(i32, i64, i64)> = history
        .iter()
        .map(|result| (result.status, result.response_ms, result.agent_id))
        .collect();
    assert_eq!(
        statuses,
        [
            (pb::MonitorStatus::Down as i32, 0, agent.agent_id),
            (pb::MonitorStatus::Warning as i32, 850, agent.agent_id),
            (pb::MonitorStatus::Healthy as i32, 60, agent.agent_id),
            (pb::MonitorStatus::Healthy as i32, 45, agent.agent_id),
        ]
    );

    // One event per status change, not per check.
    let events: Vec<(String, String)> = server
        .activity(acme.id)
        .await
        .into_iter()
        .filter(|event| event.subject_type == "monitor")
        .map(|event| (event.kind, event.message))
        .collect();
    assert_eq!(
        events,
        [
            (
                "monitor.down".to_owned(),
                "Service \"Build API\" is down: connection refused".to_owned()
            ),
            (
                "monitor.warning".to_owned(),
                "Service \"Build API\" warning - slow response (850 ms, threshold 200 ms)"
                    .to_owned()
            ),
            (
                "monitor.healthy".to_owned(),
                "Service \"Build API\" is healthy (45 ms)".to_owned()
            ),
        ]
    );

    // An agent's report about a monitor that is not its own changes nothing.
    let foreign = server
        .create_monitor(tcp_monitor(other.id, "Their DB", "postgres://their-db"))
        .await;
    agent.report(foreign.id, true, 1, "connected").await;
    agent.report(api.id, true, 30, "HTTP 200").await;
    server
        .wait_for_monitor_status(acme.id, api.id, pb::MonitorStatus::Healthy, WITHIN)
        .await;
    let untouched = server.monitor(other.id, foreign.id).await;
    assert_eq!(untouched.status, pb::MonitorStatus::Unknown as i32);
    assert!(untouched.last_checked_at.is_none());
    assert!(
        server
            .activity(other.id)
            .await
            .iter()
            .all(|event| event.subject_type != "monitor")
    );
}

async fn monitors_spread_over_agents_and_move_when_one_goes_offline(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let mut first = ScriptedAgent::connect(&server, acme.id, "acme-prod-001").await;
    let mut ids = Vec::new();
    for name in ["API", "Database", "Cache", "Queue"] {
        let monitor = server
            .create_monitor(tcp_monitor(
                acme.id,
                name,
                &format!("{}:1", name.to_lowercase()),
            ))
            .await;
        ids.push(monitor.id);
    }
    first.wait_for_monitors(&ids).await;

    // A second agent takes half the load; the first keeps the rest without restarting them.
    let mut second = ScriptedAgent::connect(&server, acme.id, "acme-prod-002").await;
    eventually("monitors spread over both agents", WITHIN, || {
        let (first, second) = (&first, &second);
        async move {
            first.assignments.borrow().len() == 2 && second.assignments.borrow().len() == 2
        }
    })
    .await;
    let moved: Vec<i64> = second
        .assignments
        .borrow()
        .iter()
        .map(|check| check.monitor_id)
        .collect();
    for monitor_id in &moved {
        assert_eq!(
            server.monitor(acme.id, *monitor_id).await.assigned_agent_id,
            second.agent_id
        );
    }

    // The first agent stops: everything moves to the second.
    first.disconnect();
    second.wait_for_monitors(&ids).await;
    second.heartbeat().await;
    for monitor_id in &ids {
        assert_eq!(
            server.monitor(acme.id, *monitor_id).await.assigned_agent_id,
            second.agent_id
        );
    }

    // With no agent left the monitors have none, and say why.
    second.disconnect();
    eventually("monitors without an agent", WITHIN, || async {
        let monitor = server.monitor(acme.id, ids[0]).await;
        monitor.assigned_agent_id == 0
            && monitor.status == pb::MonitorStatus::Unknown as i32
            && monitor.last_message.contains("no online agent")
    })
    .await;
}

async fn a_selector_limits_which_agents_check_a_monitor(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let mut first = ScriptedAgent::connect(&server, acme.id, "acme-prod-001").await;
    let mut second = ScriptedAgent::connect(&server, acme.id, "acme-prod-002").await;
    let pinned = server
        .create_monitor(pb::CreateMonitorRequest {
            agent_selector: Some(pb::AgentSelector {
                agent_id: second.agent_id,
                labels: vec![],
            }),
            ..tcp_monitor(acme.id, "Database", "postgres://acme-db")
        })
        .await;
    second.wait_for_monitors(&[pinned.id]).await;
    assert!(first.assignments.borrow().is_empty());

    // Re-pinned to the first agent: it moves.
    server
        .admin_monitors()
        .update_monitor(pb::UpdateMonitorRequest {
            customer_id: acme.id,
            monitor_id: pinned.id,
            agent_selector: Some(pb::AgentSelector {
                agent_id: first.agent_id,
                labels: vec![],
            }),
            set_agent_selector: true,
            ..Default::default()
        })
        .await
        .expect("update selector");
    first.wait_for_monitors(&[pinned.id]).await;
    second.wait_for_monitors(&[]).await;

    // A selector naming another customer's agent is refused like an unknown agent.
    let other = server.create_customer("techstart").await;
    let theirs = ScriptedAgent::connect(&server, other.id, "techstart-001").await;
    assert_status(
        server
            .admin_monitors()
            .create_monitor(pb::CreateMonitorRequest {
                agent_selector: Some(pb::AgentSelector {
                    agent_id: theirs.agent_id,
                    labels: vec![],
                }),
                ..tcp_monitor(acme.id, "Sneaky", "their-db:5432")
            })
            .await,
        Code::NotFound,
        "agent_selector.agent_id",
    );
}

cygnet_testkit::backend_tests!(
    monitors_are_created_with_defaults_read_changed_and_deleted,
    bad_monitor_input_is_refused_naming_the_field_and_writes_nothing,
    members_read_monitors_and_only_some_roles_change_them,
    agents_run_the_checks_and_their_reports_become_status_history_and_activity,
    monitors_spread_over_agents_and_move_when_one_goes_offline,
    a_selector_limits_which_agents_check_a_monitor,
);
