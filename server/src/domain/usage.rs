//! Usage metering: what a customer used, per day (UTC), for billing.

use chrono::{Datelike, NaiveDate};

use super::ValidationError;

/// Most days one usage read covers.
pub const MAX_USAGE_DAYS: i64 = 366;

/// What a customer used on one day.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageDay {
    pub day: NaiveDate,
    /// Agent time spent running jobs (each execution counts from its start to its end, on the
    /// day it ended).
    pub build_seconds: i64,
    pub executions_succeeded: i64,
    pub executions_failed: i64,
    pub executions_cancelled: i64,
    pub executions_timed_out: i64,
    /// Log and artifact bytes stored that day.
    pub log_bytes_added: i64,
    pub artifact_bytes_added: i64,
    /// Log and artifact bytes the customer stored at the day's last reading.
    pub log_bytes_stored: i64,
    pub artifact_bytes_stored: i64,
    /// Time the customer's agents were online.
    pub agent_online_seconds: i64,
    pub monitor_checks: i64,
}

/// A range of days, both ends included, at most [`MAX_USAGE_DAYS`] long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageRange {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl UsageRange {
    /// Parses `YYYY-MM-DD` ends; an empty `to` means `today`, an empty `from` the 30 days up to
    /// `to`.
    pub fn parse(from: &str, to: &str, today: NaiveDate) -> Result<Self, ValidationError> {
        let day = |field: &str, value: &str| {
            NaiveDate::parse_from_str(value, "%Y-%m-%d")
                .ok()
                .filter(|date| (1..=9999).contains(&date.year()))
                .ok_or_else(|| ValidationError::new(field, "must be a date like 2026-12-01"))
        };
        let to = if to.is_empty() { today } else { day("to", to)? };
        let from = if from.is_empty() {
            to.checked_sub_signed(chrono::Duration::days(29))
                .ok_or_else(|| ValidationError::new("to", "is too early"))?
        } else {
            day("from", from)?
        };
        if from > to {
            return Err(ValidationError::new("from", "must not be after to"));
        }
        if (to - from).num_days() >= MAX_USAGE_DAYS {
            return Err(ValidationError::new(
                "from",
                format!("must be at most {MAX_USAGE_DAYS} days before to"),
            ));
        }
        Ok(Self { from, to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("date")
    }

    #[test]
    fn ranges_default_to_the_last_thirty_days_and_are_bounded() {
        let today = date("2026-12-06");
        assert_eq!(
            UsageRange::parse("", "", today),
            Ok(UsageRange {
                from: date("2026-11-07"),
                to: today
            })
        );
        assert_eq!(
            UsageRange::parse("2026-12-01", "2026-12-03", today),
            Ok(UsageRange {
                from: date("2026-12-01"),
                to: date("2026-12-03")
            })
        );
        for (from, to, field) in [
            ("yesterday", "", "from"),
            ("", "12/06/2026", "to"),
            ("2026-12-05", "2026-12-01", "from"),
            ("2024-01-01", "2026-01-01", "from"),
            ("", "-262143-01-01", "to"),
            ("+262143-12-31", "", "from"),
            ("0000-12-31", "0001-01-01", "from"),
        ] {
            let error = UsageRange::parse(from, to, today).expect_err("refused");
            assert_eq!(error.field(), field, "{from} {to}");
        }
    }
}
