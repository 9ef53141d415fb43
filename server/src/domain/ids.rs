//! Typed ids. An id from a request is parsed once (positive, or INVALID_ARGUMENT naming the field);
//! ids read from the database are trusted.

use std::fmt;

use super::ValidationError;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(i64);

        impl $name {
            /// Parses an id from a request field; it must be positive.
            pub fn parse(value: i64, field: &str) -> Result<Self, ValidationError> {
                if value > 0 {
                    Ok(Self(value))
                } else {
                    Err(ValidationError::new(field, "must be a positive id"))
                }
            }

            /// Wraps an id read from the database.
            pub fn from_db(value: i64) -> Self {
                Self(value)
            }

            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(formatter)
            }
        }
    };
}

id_type!(
    /// A customer (tenant) id.
    CustomerId
);
id_type!(
    /// A user id.
    UserId
);
id_type!(
    /// An API token id.
    TokenId
);
id_type!(
    /// An agent id.
    AgentId
);
id_type!(
    /// A registration token id.
    RegistrationTokenId
);
id_type!(
    /// A pipeline id.
    PipelineId
);
id_type!(
    /// An execution id.
    ExecutionId
);
id_type!(
    /// An environment id.
    EnvironmentId
);
id_type!(
    /// A release id.
    ReleaseId
);
id_type!(
    /// A release execution id.
    ReleaseExecutionId
);
id_type!(
    /// A stage execution id.
    StageExecutionId
);
id_type!(
    /// A service monitor id.
    MonitorId
);
id_type!(
    /// A variable group id.
    VariableGroupId
);
id_type!(
    /// A membership invitation id.
    InvitationId
);
id_type!(
    /// A pipeline schedule id.
    ScheduleId
);
id_type!(
    /// A webhook endpoint id.
    WebhookId
);
id_type!(
    /// A webhook delivery id (a row of a webhook's delivery log).
    WebhookDeliveryId
);

/// Parses an optional id: 0 means "not given", negative is refused.
pub fn parse_optional<T>(
    value: i64,
    field: &str,
    parse: fn(i64, &str) -> Result<T, ValidationError>,
) -> Result<Option<T>, ValidationError> {
    if value == 0 {
        Ok(None)
    } else {
        parse(value, field).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_must_be_positive() {
        assert_eq!(CustomerId::parse(7, "customer_id").expect("valid").get(), 7);
        assert_eq!(
            CustomerId::parse(0, "customer_id")
                .expect_err("zero")
                .to_string(),
            "customer_id must be a positive id"
        );
        assert!(UserId::parse(-3, "user_id").is_err());
        assert_eq!(
            parse_optional(0, "user_id", UserId::parse).expect("zero"),
            None
        );
        assert!(parse_optional(-1, "user_id", UserId::parse).is_err());
    }
}
