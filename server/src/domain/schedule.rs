//! Schedules: a cron expression in a time zone that runs a pipeline with given parameters.
//! Pure rules: what a valid expression is, and when it next fires.

use std::collections::BTreeMap;

use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use super::{CustomerId, PipelineId, ScheduleId, UserId, ValidationError};

/// Longest cron expression accepted, characters.
const MAX_CRON_CHARS: usize = 200;
/// Shortest time between two runs of one schedule.
pub const MIN_INTERVAL_SECONDS: i64 = 60;
/// Occurrences looked at when checking the interval (a pattern may crowd some of its runs).
const INTERVAL_SAMPLE: usize = 16;
/// Wall-clock matches looked at for one tick after a time (more than an hour of minutes, for
/// the hour a clock change repeats).
const MAX_SEARCH_STEPS: usize = 200;

/// A parsed schedule time: the expression and its zone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    cron: Cron,
    zone: Tz,
}

impl CronSchedule {
    /// Parses `expression` (five fields, or six with seconds first, or `@daily` and the like)
    /// in `time_zone` (an IANA name; empty means UTC); refuses one that would run more often
    /// than once a minute.
    pub fn parse(expression: &str, time_zone: &str) -> Result<CronSchedule, ValidationError> {
        let expression = expression.trim();
        if expression.is_empty() || expression.chars().count() > MAX_CRON_CHARS {
            return Err(ValidationError::new(
                "cron",
                format!("must be 1-{MAX_CRON_CHARS} characters"),
            ));
        }
        let fields = expression.split_whitespace().count();
        if !expression.starts_with('@') && !(5..=6).contains(&fields) {
            return Err(ValidationError::new(
                "cron",
                format!(
                    "must have five fields (minute hour day month weekday) or six (seconds first), not {fields}"
                ),
            ));
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        let cron = parser.parse(expression).map_err(|error| {
            ValidationError::new("cron", format!("is not a cron expression: {error}"))
        })?;
        let zone = match time_zone.trim() {
            "" => Tz::UTC,
            name => name.parse::<Tz>().map_err(|_| {
                ValidationError::new(
                    "time_zone",
                    format!(
                        "{:?} is not an IANA time zone such as Europe/Berlin",
                        super::shorten(name.to_owned(), 64)
                    ),
                )
            })?,
        };
        let schedule = CronSchedule { cron, zone };
        schedule.check_interval(Utc::now())?;
        Ok(schedule)
    }

    fn check_interval(&self, from: DateTime<Utc>) -> Result<(), ValidationError> {
        let mut previous = self
            .next_after(from)
            .ok_or_else(|| ValidationError::new("cron", "never fires"))?;
        for _ in 1..INTERVAL_SAMPLE {
            let Some(next) = self.next_after(previous) else {
                break;
            };
            if (next - previous).num_seconds() < MIN_INTERVAL_SECONDS {
                return Err(ValidationError::new(
                    "cron",
                    "fires more often than once a minute",
                ));
            }
            previous = next;
        }
        Ok(())
    }

    /// The first time strictly after `at` the expression fires, in UTC.
    /// Ticks are whole seconds, so a tick stored and read back (PostgreSQL keeps microseconds)
    /// compares equal to itself. The search is by wall-clock time in the zone: in an hour that
    /// occurs twice (clocks going back) a matching time is taken at its first occurrence, so
    /// from inside the second pass the next tick is the first one after it — never one in the
    /// past, which would leave a schedule due again at once.
    pub fn next_after(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let whole = at.with_nanosecond(0).unwrap_or(at);
        let mut from = whole.with_timezone(&self.zone);
        for _ in 0..MAX_SEARCH_STEPS {
            let next = self.cron.find_next_occurrence(&from, false).ok()?;
            let utc = next.with_timezone(&Utc);
            if utc > whole {
                return utc.with_nanosecond(0);
            }
            from = next;
        }
        None
    }

    /// The zone's name, as stored.
    pub fn zone_name(&self) -> &'static str {
        self.zone.name()
    }
}

/// A stored schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub id: ScheduleId,
    pub customer_id: CustomerId,
    pub pipeline_id: PipelineId,
    pub cron: String,
    pub time_zone: String,
    pub parameters: BTreeMap<String, String>,
    pub enabled: bool,
    /// When it fires next (unset while disabled).
    pub next_run_at: Option<DateTime<Utc>>,
    pub last_run_at: Option<DateTime<Utc>>,
    /// The execution its last tick queued; unset when none did.
    pub last_execution_id: Option<i64>,
    /// Why its last tick queued nothing ("" when it did).
    pub last_error: String,
    pub created_by: UserId,
    pub created_at: DateTime<Utc>,
}

/// A new schedule, checked.
#[derive(Debug, Clone)]
pub struct NewSchedule {
    pub pipeline_id: PipelineId,
    pub cron: String,
    pub time_zone: String,
    pub parameters: BTreeMap<String, String>,
    pub enabled: bool,
    pub parsed: CronSchedule,
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("a time")
            .with_timezone(&Utc)
    }

    #[test]
    fn five_or_six_fields_in_a_zone() {
        let nightly = CronSchedule::parse("0 2 * * *", "Europe/Berlin").expect("valid");
        // 02:00 in Berlin in winter is 01:00 UTC.
        assert_eq!(
            nightly.next_after(at("2026-12-07T12:00:00Z")),
            Some(at("2026-12-08T01:00:00Z"))
        );
        let with_seconds = CronSchedule::parse("30 */5 * * * *", "").expect("valid");
        assert_eq!(with_seconds.zone_name(), "UTC");
        assert_eq!(
            with_seconds.next_after(at("2026-12-07T12:00:00Z")),
            Some(at("2026-12-07T12:00:30Z"))
        );
        // Ticks fall on whole seconds whatever the time asked from.
        assert_eq!(
            nightly.next_after(at("2026-12-07T12:00:00.936962Z")),
            Some(at("2026-12-08T01:00:00Z"))
        );
        let hourly = CronSchedule::parse("@hourly", "UTC").expect("valid");
        assert_eq!(
            hourly.next_after(Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).unwrap()),
            Some(at("2026-12-07T13:00:00Z"))
        );
    }

    #[test]
    fn the_hour_clocks_repeat_never_yields_a_past_tick() {
        // Berlin's clocks went back at 01:00 UTC on 2026-10-25 (03:00 CEST → 02:00 CET).
        let every_five = CronSchedule::parse("*/5 * * * *", "Europe/Berlin").expect("valid");
        for at in [
            "2026-10-25T00:10:00Z",
            "2026-10-25T00:58:00Z",
            "2026-10-25T01:10:00Z",
            "2026-10-25T01:59:00Z",
        ] {
            let at = at_(at);
            let next = every_five.next_after(at).expect("a next tick");
            // The repeated hour's wall-clock times ran in its first pass; the second pass
            // is skipped, so the next tick is at most a little over an hour away.
            assert!(
                next > at && next - at <= chrono::Duration::minutes(65),
                "{at} → {next}"
            );
        }
        // And forward: 02:30 does not exist on 2026-03-29 in Berlin; the next day's runs on.
        let half_past_two = CronSchedule::parse("30 2 * * *", "Europe/Berlin").expect("valid");
        let next = half_past_two
            .next_after(at_("2026-03-29T00:00:00Z"))
            .expect("a next tick");
        assert!(next > at_("2026-03-29T00:00:00Z"), "{next}");
    }

    fn at_(text: &str) -> DateTime<Utc> {
        at(text)
    }

    #[test]
    fn refusals_name_the_field() {
        for (expression, zone, field, fragment) in [
            ("", "", "cron", "1-200 characters"),
            ("* * *", "", "cron", "five fields"),
            ("0 0 1 1 * 2030", "", "cron", "not a cron expression"),
            ("61 * * * *", "", "cron", "not a cron expression"),
            (
                "*/30 * * * * *",
                "",
                "cron",
                "more often than once a minute",
            ),
            ("* * * * * *", "", "cron", "more often than once a minute"),
            ("0 * * * *", "Mars/Olympus", "time_zone", "IANA time zone"),
        ] {
            let refused = CronSchedule::parse(expression, zone).expect_err(expression);
            assert_eq!(refused.field(), field, "{expression}");
            assert!(
                refused.to_string().contains(fragment),
                "{expression}: {refused}"
            );
        }
    }
}
