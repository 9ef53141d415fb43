//! Domain → protobuf conversions, and the timestamp conversions both directions need.

use chrono::{DateTime, Utc};
use cygnet_proto::v1 as pb;
use prost_types::Timestamp;

use crate::domain::{
    ActivityEvent, Agent, AgentFigures, AgentStatus, ApiToken, Customer, Invitation, Membership,
    RegistrationToken, Role, User, ValidationError,
};

pub fn timestamp(at: DateTime<Utc>) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    })
}

/// The earliest second a request timestamp may name: 0001-01-01T00:00:00Z, the start of the
/// range `google.protobuf.Timestamp` defines.
const EARLIEST_TIMESTAMP_SECONDS: i64 = -62_135_596_800;
/// The latest second a request timestamp may name: 9999-12-31T23:59:59Z, the end of that range.
const LATEST_TIMESTAMP_SECONDS: i64 = 253_402_300_799;

/// A request timestamp; anything outside the range `google.protobuf.Timestamp` defines (years 1
/// to 9999, nanos 0 to 999,999,999) is INVALID_ARGUMENT naming `field`. Within that range both
/// databases store it, and a handler may move it by days without leaving chrono's range.
pub fn parse_timestamp(field: &str, value: &Timestamp) -> Result<DateTime<Utc>, ValidationError> {
    if !(EARLIEST_TIMESTAMP_SECONDS..=LATEST_TIMESTAMP_SECONDS).contains(&value.seconds) {
        return Err(ValidationError::new(
            field,
            "must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z",
        ));
    }
    u32::try_from(value.nanos)
        .ok()
        .filter(|nanos| *nanos < 1_000_000_000)
        .and_then(|nanos| DateTime::from_timestamp(value.seconds, nanos))
        .ok_or_else(|| ValidationError::new(field, "is not a valid timestamp"))
}

/// A request's `start_time`/`end_time` window: `end_time` defaults to `now`, `start_time` to
/// `default_span` before the end; the start must come first. Both ends are checked by
/// [`parse_timestamp`], and the default start is computed with checked arithmetic.
pub fn time_range(
    start: Option<&Timestamp>,
    end: Option<&Timestamp>,
    now: DateTime<Utc>,
    default_span: chrono::Duration,
) -> Result<(DateTime<Utc>, DateTime<Utc>), ValidationError> {
    let end = match end {
        Some(end) => parse_timestamp("end_time", end)?,
        None => now,
    };
    let start = match start {
        Some(start) => parse_timestamp("start_time", start)?,
        None => end
            .checked_sub_signed(default_span)
            .ok_or_else(|| ValidationError::new("end_time", "is too early"))?,
    };
    if start >= end {
        return Err(ValidationError::new(
            "start_time",
            "must be before end_time",
        ));
    }
    Ok((start, end))
}

pub fn role_to_pb(role: Role) -> pb::Role {
    match role {
        Role::Admin => pb::Role::Admin,
        Role::Devops => pb::Role::Devops,
        Role::Developer => pb::Role::Developer,
        Role::Qa => pb::Role::Qa,
        Role::Viewer => pb::Role::Viewer,
    }
}

/// A role from a request: unspecified and unknown values are INVALID_ARGUMENT.
pub fn parse_role(field: &str, value: i32) -> Result<Role, ValidationError> {
    match pb::Role::try_from(value) {
        Ok(pb::Role::Admin) => Ok(Role::Admin),
        Ok(pb::Role::Devops) => Ok(Role::Devops),
        Ok(pb::Role::Developer) => Ok(Role::Developer),
        Ok(pb::Role::Qa) => Ok(Role::Qa),
        Ok(pb::Role::Viewer) => Ok(Role::Viewer),
        Ok(pb::Role::Unspecified) => Err(ValidationError::new(
            field,
            "is required: one of ROLE_ADMIN, ROLE_DEVOPS, ROLE_DEVELOPER, ROLE_QA, ROLE_VIEWER",
        )),
        Err(_) => Err(ValidationError::new(
            field,
            format!("has unknown value {value}"),
        )),
    }
}

impl From<Customer> for pb::Customer {
    fn from(customer: Customer) -> Self {
        pb::Customer {
            id: customer.id.get(),
            name: customer.name,
            display_name: customer.display_name,
            description: customer.description,
            logo_url: customer.logo_url,
            contact_email: customer.contact_email,
            contact_phone: customer.contact_phone,
            address: customer.address,
            is_active: customer.is_active,
            settings: customer.settings.to_string(),
            created_at: timestamp(customer.created_at),
            updated_at: timestamp(customer.updated_at),
            created_by: customer.created_by.map_or(0, |id| id.get()),
        }
    }
}

impl From<User> for pb::User {
    fn from(user: User) -> Self {
        pb::User {
            id: user.id.get(),
            username: user.username,
            email: user.email,
            full_name: user.full_name,
            is_active: user.is_active,
            is_superuser: user.is_superuser,
            created_at: timestamp(user.created_at),
            last_seen_at: user.last_seen_at.and_then(timestamp),
        }
    }
}

impl From<Membership> for pb::Membership {
    fn from(membership: Membership) -> Self {
        pb::Membership {
            user_id: membership.user_id.get(),
            customer_id: membership.customer_id.get(),
            role: role_to_pb(membership.role).into(),
            is_default: membership.is_default,
            assigned_at: timestamp(membership.assigned_at),
        }
    }
}

pub fn member((membership, user): (Membership, User)) -> pb::Member {
    pb::Member {
        membership: Some(membership.into()),
        user: Some(user.into()),
    }
}

impl From<Invitation> for pb::Invitation {
    fn from(invitation: Invitation) -> Self {
        pb::Invitation {
            id: invitation.id.get(),
            customer_id: invitation.customer_id.get(),
            customer_display_name: invitation.customer_display_name,
            username: invitation.username,
            role: role_to_pb(invitation.role).into(),
            invited_by: invitation.invited_by.get(),
            created_at: timestamp(invitation.created_at),
            expires_at: timestamp(invitation.expires_at),
        }
    }
}

pub fn user_customer((membership, customer): (Membership, Customer)) -> pb::UserCustomer {
    pb::UserCustomer {
        membership: Some(membership.into()),
        customer: Some(customer.into()),
    }
}

impl From<ApiToken> for pb::ApiToken {
    fn from(token: ApiToken) -> Self {
        pb::ApiToken {
            id: token.id.get(),
            user_id: token.user_id.get(),
            name: token.name,
            token_prefix: token.token_prefix,
            created_at: timestamp(token.created_at),
            expires_at: token.expires_at.and_then(timestamp),
            last_used_at: token.last_used_at.and_then(timestamp),
            revoked_at: token.revoked_at.and_then(timestamp),
        }
    }
}

pub fn sample(figures: AgentFigures, at: DateTime<Utc>) -> pb::AgentSample {
    pb::AgentSample {
        sampled_at: timestamp(at),
        cpu_percent: figures.cpu_percent,
        memory_percent: figures.memory_percent,
        memory_used_bytes: figures.memory_used_bytes,
        memory_total_bytes: figures.memory_total_bytes,
        disk_free_bytes: figures.disk_free_bytes,
        load_average: figures.load_average,
        running_jobs: figures.running_jobs,
    }
}

/// The figures as the agent reported them; `AgentFigures::sanitized` makes them safe to keep.
pub fn figures_from_heartbeat(heartbeat: &pb::Heartbeat) -> AgentFigures {
    AgentFigures {
        cpu_percent: heartbeat.cpu_percent,
        memory_percent: heartbeat.memory_percent,
        memory_used_bytes: heartbeat.memory_used_bytes,
        memory_total_bytes: heartbeat.memory_total_bytes,
        disk_free_bytes: heartbeat.disk_free_bytes,
        load_average: heartbeat.load_average,
        running_jobs: heartbeat.running_jobs,
    }
}

impl From<Agent> for pb::Agent {
    fn from(agent: Agent) -> Self {
        pb::Agent {
            id: agent.id.get(),
            customer_id: agent.customer_id.get(),
            uuid: agent.uuid,
            name: agent.name,
            location: agent.location,
            labels: agent.labels,
            hostname: agent.hostname,
            os: agent.os,
            arch: agent.arch,
            version: agent.version,
            max_concurrent_jobs: agent.max_concurrent_jobs,
            enabled: agent.enabled,
            status: match agent.status {
                AgentStatus::Online => pb::AgentStatus::Online,
                AgentStatus::Offline => pb::AgentStatus::Offline,
            }
            .into(),
            last_seen_at: agent.last_seen_at.and_then(timestamp),
            registered_at: timestamp(agent.registered_at),
            updated_at: timestamp(agent.updated_at),
            latest: agent.latest.map(|(figures, at)| sample(figures, at)),
        }
    }
}

impl From<RegistrationToken> for pb::RegistrationToken {
    fn from(token: RegistrationToken) -> Self {
        pb::RegistrationToken {
            id: token.id.get(),
            customer_id: token.customer_id.get(),
            description: token.description,
            token_prefix: token.token_prefix,
            created_by: token.created_by.get(),
            created_at: timestamp(token.created_at),
            expires_at: token.expires_at.and_then(timestamp),
            max_uses: token.max_uses,
            use_count: token.use_count,
            revoked_at: token.revoked_at.and_then(timestamp),
        }
    }
}

impl From<ActivityEvent> for pb::ActivityEvent {
    fn from(event: ActivityEvent) -> Self {
        pb::ActivityEvent {
            id: event.id,
            customer_id: event.customer_id.get(),
            kind: event.kind,
            subject_type: event.subject_type,
            subject_id: event.subject_id,
            message: event.message,
            actor_user_id: event.actor.map_or(0, |actor| actor.get()),
            created_at: timestamp(event.created_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_unknown_values_are_refused() {
        for role in Role::ALL {
            assert_eq!(
                parse_role("role", role_to_pb(role).into()).expect("known"),
                role
            );
        }
        assert_eq!(
            parse_role("role", 42).expect_err("unknown").to_string(),
            "role has unknown value 42"
        );
        assert!(parse_role("role", 0).is_err());
    }

    #[test]
    fn time_ranges_default_and_are_ordered() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).expect("now");
        let hour = chrono::Duration::hours(1);
        assert_eq!(time_range(None, None, now, hour), Ok((now - hour, now)));
        let at = |seconds| Timestamp { seconds, nanos: 0 };
        let earliest = at(-62_135_596_800);
        let (start, end) = time_range(None, Some(&earliest), now, hour).expect("the first second");
        assert_eq!(
            end - start,
            hour,
            "the default start is computed without overflow"
        );
        let error = time_range(
            Some(&at(1_800_000_000)),
            Some(&at(1_700_000_000)),
            now,
            hour,
        )
        .expect_err("start after end");
        assert_eq!(error.field(), "start_time");
        let error = time_range(Some(&at(i64::MIN)), None, now, hour).expect_err("out of range");
        assert_eq!(error.field(), "start_time");
    }

    #[test]
    fn timestamps() {
        let bad = Timestamp {
            seconds: 0,
            nanos: -1,
        };
        assert!(parse_timestamp("expires_at", &bad).is_err());
        let good = Timestamp {
            seconds: 1_800_000_000,
            nanos: 5,
        };
        assert_eq!(
            timestamp(parse_timestamp("expires_at", &good).expect("valid")),
            Some(good)
        );
        for seconds in [i64::MIN, -62_135_596_801, 253_402_300_800, i64::MAX] {
            let error = parse_timestamp("end_time", &Timestamp { seconds, nanos: 0 })
                .expect_err("outside years 1 to 9999");
            assert!(error.to_string().starts_with("end_time "), "{error}");
        }
        for seconds in [-62_135_596_800, 253_402_300_799] {
            let edge = Timestamp {
                seconds,
                nanos: 999_999_999,
            };
            let at = parse_timestamp("end_time", &edge).expect("the edges are valid");
            assert!(at.checked_sub_signed(chrono::Duration::days(30)).is_some());
        }
    }
}
