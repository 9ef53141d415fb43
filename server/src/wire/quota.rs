//! Quotas on the wire.

use std::collections::HashMap;

use cygnet_proto::v1 as pb;

use crate::domain::quota::QuotaUse;
use crate::domain::{Quota, ValidationError};

impl From<QuotaUse> for pb::QuotaUsage {
    fn from(usage: QuotaUse) -> Self {
        pb::QuotaUsage {
            name: usage.quota.name().to_owned(),
            limit: usage.limit,
            used: usage.used,
            overridden: usage.overridden,
        }
    }
}

/// What a SetCustomerQuotas request changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaChanges {
    pub set: Vec<(Quota, i64)>,
    pub reset: Vec<Quota>,
}

/// The limits to set and the quotas to reset of a SetCustomerQuotas request, each name known,
/// each limit within the quota's range, no quota both set and reset.
pub fn quota_changes(
    limits: &HashMap<String, i64>,
    reset: &[String],
) -> Result<QuotaChanges, ValidationError> {
    let known = || {
        Quota::ALL
            .iter()
            .map(|quota| quota.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut names: Vec<&String> = limits.keys().collect();
    names.sort();
    let mut set = Vec::with_capacity(limits.len());
    for name in names {
        let field = format!("limits[{name}]");
        let quota = Quota::from_name(name).ok_or_else(|| {
            ValidationError::new(&field, format!("is not a quota (known: {})", known()))
        })?;
        let limit = limits[name];
        if !(1..=quota.ceiling()).contains(&limit) {
            return Err(ValidationError::new(
                &field,
                format!("must be between 1 and {}", quota.ceiling()),
            ));
        }
        set.push((quota, limit));
    }
    let mut back = Vec::with_capacity(reset.len());
    for (index, name) in reset.iter().enumerate() {
        let field = format!("reset[{index}]");
        let quota = Quota::from_name(name).ok_or_else(|| {
            ValidationError::new(
                &field,
                format!("{name:?} is not a quota (known: {})", known()),
            )
        })?;
        if set.iter().any(|(chosen, _)| *chosen == quota) {
            return Err(ValidationError::new(
                &field,
                format!("{name} is also in limits; set it or reset it"),
            ));
        }
        back.push(quota);
    }
    if set.is_empty() && back.is_empty() {
        return Err(ValidationError::new(
            "limits",
            "or reset must name at least one quota",
        ));
    }
    Ok(QuotaChanges { set, reset: back })
}
