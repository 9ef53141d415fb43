//! Service monitors checked from this agent: inside the customer's network, on the server's
//! behalf.
//!
//! The server sends the complete set of monitors this agent checks ([`Monitors::assign`]). Each
//! monitor runs in its own task: a first check at once, then one every interval, each bounded by
//! the monitor's timeout, each result sent as a `MonitorReport`. A monitor that is sent again
//! unchanged keeps its schedule; a changed one starts over; one left out stops at once, even in
//! the middle of a check.
//!
//! Reports are not acknowledged and a newer check supersedes an older one, so a task never
//! waits for room in the report queue: when the queue is full the report is dropped.

pub mod http;
pub mod target;
pub mod tcp;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use cygnet_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::task::JoinHandle;

use self::http::{HttpChecker, TlsRoots};
use self::target::{HttpTarget, TcpTarget};

/// Room in the report queue between the checks and the stream.
pub const REPORT_QUEUE: usize = 64;
/// Interval used when the server sends none (its own default).
const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Timeout used when the server sends none (its own default).
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(5000);

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    /// Connected (TCP), or answered with the expected status (HTTP).
    pub up: bool,
    /// Milliseconds until the connection or the response headers; 0 when not up.
    pub response_ms: i64,
    /// The HTTP status; 0 for TCP or when no response arrived.
    pub http_status: i32,
    /// "connected", "HTTP 200", "connection refused", "timed out after 5000 ms", …
    pub message: String,
}

impl CheckOutcome {
    fn up(response_ms: i64, http_status: i32, message: String) -> Self {
        Self {
            up: true,
            response_ms,
            http_status,
            message,
        }
    }

    fn down(message: String) -> Self {
        Self {
            up: false,
            response_ms: 0,
            http_status: 0,
            message,
        }
    }

    fn timed_out(timeout: Duration) -> Self {
        Self::down(format!("timed out after {} ms", timeout.as_millis()))
    }
}

/// Milliseconds since `started`.
fn elapsed_ms(started: Instant) -> i64 {
    i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX)
}

/// How a monitor is checked, as the agent understands its `MonitorCheck`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Probe {
    Tcp(TcpTarget),
    Http {
        target: HttpTarget,
        /// 0: any 2xx.
        expected_status: u16,
    },
    /// Cannot be checked; every check reports this.
    Invalid(String),
}

/// A monitor's check, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MonitorDefinition {
    monitor_id: i64,
    probe: Probe,
    interval: Duration,
    timeout: Duration,
}

impl From<&pb::MonitorCheck> for MonitorDefinition {
    /// Never fails: what the agent cannot check becomes [`Probe::Invalid`], so the server learns
    /// why from the reports.
    fn from(check: &pb::MonitorCheck) -> Self {
        let probe = match pb::MonitorKind::try_from(check.kind) {
            Ok(pb::MonitorKind::Tcp) => match TcpTarget::parse(&check.target) {
                Ok(target) => Probe::Tcp(target),
                Err(error) => Probe::Invalid(format!("invalid target: {error}")),
            },
            Ok(pb::MonitorKind::Http) => {
                match (
                    HttpTarget::parse(&check.target),
                    u16::try_from(check.expected_status),
                ) {
                    (Ok(target), Ok(expected_status)) if expected_status <= 999 => Probe::Http {
                        target,
                        expected_status,
                    },
                    (Err(error), _) => Probe::Invalid(format!("invalid target: {error}")),
                    (Ok(_), _) => {
                        Probe::Invalid(format!("invalid expected status {}", check.expected_status))
                    }
                }
            }
            Ok(pb::MonitorKind::Unspecified) | Err(_) => {
                Probe::Invalid(format!("unsupported monitor kind {}", check.kind))
            }
        };
        let interval = u64::try_from(check.interval_seconds)
            .ok()
            .filter(|seconds| *seconds > 0)
            .map_or(DEFAULT_INTERVAL, Duration::from_secs);
        let timeout = u64::try_from(check.timeout_ms)
            .ok()
            .filter(|milliseconds| *milliseconds > 0)
            .map_or(DEFAULT_TIMEOUT, Duration::from_millis);
        Self {
            monitor_id: check.monitor_id,
            probe,
            interval,
            timeout,
        }
    }
}

/// A probe ready to run: the HTTP client is built once per monitor task.
enum PreparedProbe {
    Tcp(TcpTarget),
    /// Boxed: the client is large and built once per monitor.
    Http(Box<HttpChecker>),
    Invalid(String),
}

impl PreparedProbe {
    async fn prepare(probe: Probe, tls: &TlsRoots) -> Self {
        match probe {
            Probe::Tcp(target) => Self::Tcp(target),
            Probe::Http {
                target,
                expected_status,
            } => Self::Http(Box::new(
                HttpChecker::new(target, expected_status, tls).await,
            )),
            Probe::Invalid(problem) => Self::Invalid(problem),
        }
    }

    /// One check, bounded by `timeout`.
    async fn check(&self, timeout: Duration) -> CheckOutcome {
        match self {
            Self::Tcp(target) => tokio::time::timeout(timeout, tcp::check(target))
                .await
                .unwrap_or_else(|_| CheckOutcome::timed_out(timeout)),
            // Bounds itself: the body is read within the same timeout without changing the outcome.
            Self::Http(checker) => checker.check(timeout).await,
            Self::Invalid(problem) => CheckOutcome::down(problem.clone()),
        }
    }
}

/// A monitor being checked.
struct RunningMonitor {
    /// As the server sent it: an identical copy later keeps the schedule.
    check: pb::MonitorCheck,
    task: JoinHandle<()>,
}

/// The monitors this agent checks. Dropping it stops every check.
pub struct Monitors {
    reports: mpsc::Sender<pb::MonitorReport>,
    tls: TlsRoots,
    running: HashMap<i64, RunningMonitor>,
}

impl Monitors {
    /// Checks will send their reports to `reports` (without waiting: see the module docs).
    pub fn new(reports: mpsc::Sender<pb::MonitorReport>) -> Self {
        Self {
            reports,
            tls: TlsRoots::default(),
            running: HashMap::new(),
        }
    }

    /// Makes `set` the complete set of monitors checked here: monitors not in it stop at once,
    /// new and changed ones start with a check at once, unchanged ones keep their schedule. When
    /// a monitor id appears twice, the later copy counts. Must be called within a Tokio runtime.
    pub fn assign(&mut self, set: Vec<pb::MonitorCheck>) {
        let mut wanted: HashMap<i64, pb::MonitorCheck> = HashMap::with_capacity(set.len());
        for check in set {
            wanted.insert(check.monitor_id, check);
        }
        let (mut stopped, mut changed) = (0usize, 0usize);
        self.running.retain(|monitor_id, running| {
            let keep = match wanted.get(monitor_id) {
                Some(check) if *check == running.check && !running.task.is_finished() => true,
                Some(_) => {
                    changed += 1;
                    false
                }
                None => {
                    stopped += 1;
                    false
                }
            };
            if !keep {
                running.task.abort();
            }
            keep
        });
        let mut started = 0usize;
        for (monitor_id, check) in wanted {
            if self.running.contains_key(&monitor_id) {
                continue;
            }
            let task = tokio::spawn(run_monitor(
                MonitorDefinition::from(&check),
                self.reports.clone(),
                self.tls.clone(),
            ));
            self.running
                .insert(monitor_id, RunningMonitor { check, task });
            started += 1;
        }
        let added = started - changed;
        if added + changed + stopped > 0 {
            tracing::info!(
                added,
                changed,
                stopped,
                "monitors assigned: {}",
                self.running.len()
            );
        } else {
            tracing::debug!("monitors assigned: {} (unchanged)", self.running.len());
        }
    }

    /// Stops every check at once (the agent is shutting down).
    pub fn stop_all(&mut self) {
        if self.running.is_empty() {
            return;
        }
        tracing::info!(stopped = self.running.len(), "monitors stopped");
        for (_, running) in self.running.drain() {
            running.task.abort();
        }
    }

    /// Monitors checked now.
    pub fn count(&self) -> usize {
        self.running.len()
    }
}

impl Drop for Monitors {
    fn drop(&mut self) {
        for running in self.running.values() {
            running.task.abort();
        }
    }
}

/// Checks one monitor until its task is aborted (or nobody reads reports any more).
async fn run_monitor(
    definition: MonitorDefinition,
    reports: mpsc::Sender<pb::MonitorReport>,
    tls: TlsRoots,
) {
    let monitor_id = definition.monitor_id;
    let probe = PreparedProbe::prepare(definition.probe, &tls).await;
    let mut ticker = tokio::time::interval(definition.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let checked_at = SystemTime::now();
        let outcome = probe.check(definition.timeout).await;
        tracing::debug!(
            monitor_id,
            up = outcome.up,
            response_ms = outcome.response_ms,
            http_status = outcome.http_status,
            message = %outcome.message,
            "monitor checked"
        );
        let report = pb::MonitorReport {
            monitor_id,
            checked_at: Some(checked_at.into()),
            up: outcome.up,
            response_ms: outcome.response_ms,
            http_status: outcome.http_status,
            message: outcome.message,
        };
        match reports.try_send(report) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                tracing::debug!(
                    monitor_id,
                    "monitor report dropped: the report queue is full"
                );
            }
            Err(TrySendError::Closed(_)) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;
    use tokio::time::Instant as TokioInstant;

    /// A monitor the agent cannot parse: its checks do no I/O, so they are safe with a paused
    /// clock.
    fn unparseable(monitor_id: i64, interval_seconds: i32) -> pb::MonitorCheck {
        pb::MonitorCheck {
            monitor_id,
            kind: pb::MonitorKind::Tcp as i32,
            target: "acme-db".into(),
            interval_seconds,
            timeout_ms: 1000,
            expected_status: 0,
        }
    }

    fn monitors(capacity: usize) -> (Monitors, mpsc::Receiver<pb::MonitorReport>) {
        let (sender, receiver) = mpsc::channel(capacity);
        (Monitors::new(sender), receiver)
    }

    async fn next(reports: &mut mpsc::Receiver<pb::MonitorReport>) -> pb::MonitorReport {
        reports.recv().await.expect("a report")
    }

    #[test]
    fn checks_become_definitions_and_what_cannot_be_checked_says_why() {
        let definition = MonitorDefinition::from(&pb::MonitorCheck {
            monitor_id: 4,
            kind: pb::MonitorKind::Http as i32,
            target: "https://api.acme.com/health".into(),
            interval_seconds: 30,
            timeout_ms: 2500,
            expected_status: 204,
        });
        assert_eq!(definition.monitor_id, 4);
        assert_eq!(definition.interval, Duration::from_secs(30));
        assert_eq!(definition.timeout, Duration::from_millis(2500));
        assert!(matches!(
            definition.probe,
            Probe::Http {
                expected_status: 204,
                ..
            }
        ));

        let definition = MonitorDefinition::from(&pb::MonitorCheck {
            monitor_id: 5,
            kind: pb::MonitorKind::Tcp as i32,
            target: "postgres://acme-db".into(),
            ..Default::default()
        });
        assert_eq!(
            definition.probe,
            Probe::Tcp(TcpTarget {
                host: "acme-db".into(),
                port: 5432
            })
        );
        assert_eq!(
            (definition.interval, definition.timeout),
            (DEFAULT_INTERVAL, DEFAULT_TIMEOUT)
        );

        for (check, problem) in [
            (
                unparseable(1, 60),
                "invalid target: must name a port (host:port)",
            ),
            (
                pb::MonitorCheck {
                    kind: pb::MonitorKind::Http as i32,
                    target: "acme.com".into(),
                    ..Default::default()
                },
                "invalid target: is not a URL (relative URL without a base)",
            ),
            (
                pb::MonitorCheck {
                    kind: pb::MonitorKind::Http as i32,
                    target: "https://acme.com".into(),
                    expected_status: -1,
                    ..Default::default()
                },
                "invalid expected status -1",
            ),
            (
                pb::MonitorCheck {
                    kind: 9,
                    target: "acme.com:80".into(),
                    ..Default::default()
                },
                "unsupported monitor kind 9",
            ),
        ] {
            assert_eq!(
                MonitorDefinition::from(&check).probe,
                Probe::Invalid(problem.to_owned())
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_monitor_checks_at_once_then_every_interval_and_reports_what_it_cannot_check() {
        let (mut monitors, mut reports) = monitors(8);
        let assigned = TokioInstant::now();
        monitors.assign(vec![unparseable(7, 60)]);
        for expected_seconds in [0, 60, 120] {
            let report = next(&mut reports).await;
            assert_eq!(assigned.elapsed(), Duration::from_secs(expected_seconds));
            assert_eq!(report.monitor_id, 7);
            assert!(!report.up);
            assert_eq!((report.response_ms, report.http_status), (0, 0));
            assert_eq!(
                report.message,
                "invalid target: must name a port (host:port)"
            );
            assert!(report.checked_at.is_some());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_same_set_again_keeps_the_schedule() {
        let (mut monitors, mut reports) = monitors(8);
        let assigned = TokioInstant::now();
        monitors.assign(vec![unparseable(7, 60), unparseable(8, 60)]);
        let mut first: Vec<i64> = vec![
            next(&mut reports).await.monitor_id,
            next(&mut reports).await.monitor_id,
        ];
        first.sort_unstable();
        assert_eq!(first, [7, 8]);
        let task = monitors.running[&7].task.id();

        tokio::time::advance(Duration::from_secs(30)).await;
        // Again, in another order (e.g. after a reconnect).
        monitors.assign(vec![unparseable(8, 60), unparseable(7, 60)]);
        assert_eq!(monitors.running[&7].task.id(), task, "not restarted");
        // No extra check: the next reports come when the interval is up, not now.
        let report = next(&mut reports).await;
        assert_eq!(assigned.elapsed(), Duration::from_secs(60));
        assert!([7, 8].contains(&report.monitor_id));
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_monitor_starts_over_with_a_check_at_once() {
        let (mut monitors, mut reports) = monitors(8);
        let assigned = TokioInstant::now();
        monitors.assign(vec![unparseable(7, 60)]);
        next(&mut reports).await;
        let task = monitors.running[&7].task.id();

        tokio::time::advance(Duration::from_secs(30)).await;
        monitors.assign(vec![unparseable(7, 120)]);
        assert_ne!(monitors.running[&7].task.id(), task, "restarted");
        next(&mut reports).await;
        assert_eq!(assigned.elapsed(), Duration::from_secs(30));
        // The old schedule is gone: the next check is a full new interval later.
        next(&mut reports).await;
        assert_eq!(assigned.elapsed(), Duration::from_secs(150));
    }

    #[tokio::test(start_paused = true)]
    async fn a_removed_monitor_stops_and_the_others_go_on() {
        let (mut monitors, mut reports) = monitors(8);
        monitors.assign(vec![unparseable(7, 60), unparseable(8, 60)]);
        next(&mut reports).await;
        next(&mut reports).await;
        let removed = monitors.running[&7].task.abort_handle();

        monitors.assign(vec![unparseable(8, 60)]);
        assert_eq!(monitors.count(), 1);
        for _ in 0..3 {
            assert_eq!(next(&mut reports).await.monitor_id, 8);
        }
        assert!(removed.is_finished());

        // An empty set stops everything.
        monitors.assign(Vec::new());
        assert_eq!(monitors.count(), 0);
        let quiet = tokio::time::timeout(Duration::from_secs(3600), reports.recv()).await;
        assert!(quiet.is_err(), "no report after all monitors were removed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_report_queue_drops_reports_instead_of_holding_up_the_checks() {
        let (mut monitors, mut reports) = monitors(1);
        let assigned = TokioInstant::now();
        monitors.assign(vec![unparseable(7, 10)]);
        // Nobody reads for 35 s: the checks at 10, 20 and 30 s find the queue full.
        for step in [10, 10, 10, 5] {
            tokio::time::advance(Duration::from_secs(step)).await;
            tokio::task::yield_now().await;
        }
        next(&mut reports).await;
        // A task waiting for room would deliver the 10 s report now; this one checks again at 40 s.
        next(&mut reports).await;
        assert_eq!(assigned.elapsed(), Duration::from_secs(40));
    }

    #[tokio::test(start_paused = true)]
    async fn stop_all_and_drop_stop_every_check() {
        let (mut monitors, mut reports) = monitors(8);
        monitors.assign(vec![unparseable(7, 60), unparseable(8, 60)]);
        next(&mut reports).await;
        next(&mut reports).await;
        monitors.stop_all();
        assert_eq!(monitors.count(), 0);
        let quiet = tokio::time::timeout(Duration::from_secs(3600), reports.recv()).await;
        assert!(quiet.is_err(), "no report after stop_all");

        monitors.assign(vec![unparseable(9, 60)]);
        next(&mut reports).await;
        drop(monitors);
        // With the monitors gone, so is every sender: the queue ends.
        assert!(reports.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_check_in_progress_ends_when_its_monitor_is_removed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (progress, mut seen) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut buffer = [0u8; 1024];
            let _ = stream.read(&mut buffer).await;
            let _ = progress.send("request");
            // Never answers; notices when the agent drops the connection.
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest).await;
            let _ = progress.send("closed");
        });
        let (mut monitors, mut reports) = monitors(8);
        monitors.assign(vec![pb::MonitorCheck {
            monitor_id: 3,
            kind: pb::MonitorKind::Http as i32,
            target: format!("http://{address}/slow"),
            interval_seconds: 60,
            timeout_ms: 60_000,
            expected_status: 0,
        }]);
        let within = Duration::from_secs(5);
        let step = tokio::time::timeout(within, seen.recv()).await;
        assert_eq!(step.expect("request in time"), Some("request"));

        monitors.assign(Vec::new());
        let step = tokio::time::timeout(within, seen.recv()).await;
        assert_eq!(step.expect("closed in time"), Some("closed"));
        assert!(
            reports.try_recv().is_err(),
            "an aborted check reports nothing"
        );
    }

    #[tokio::test]
    async fn checks_report_real_results_over_the_queue() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (mut monitors, mut reports) = monitors(8);
        let before = SystemTime::now();
        monitors.assign(vec![pb::MonitorCheck {
            monitor_id: 11,
            kind: pb::MonitorKind::Tcp as i32,
            target: format!("tcp://{address}"),
            interval_seconds: 60,
            timeout_ms: 5000,
            expected_status: 0,
        }]);
        let report = tokio::time::timeout(Duration::from_secs(5), next(&mut reports))
            .await
            .expect("report in time");
        assert_eq!(
            (
                report.monitor_id,
                report.up,
                report.http_status,
                report.message.as_str()
            ),
            (11, true, 0, "connected")
        );
        let checked_at =
            SystemTime::try_from(report.checked_at.expect("checked_at")).expect("a valid time");
        assert!(checked_at >= before - Duration::from_secs(1));
        assert!(checked_at <= SystemTime::now());
    }
}
