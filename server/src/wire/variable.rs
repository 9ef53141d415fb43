//! Variable groups on the way out (secret values never leave: responses carry `is_secret` and
//! an empty value).

use cygnet_proto::v1 as pb;

use super::common::timestamp;
use crate::domain::variable::{Variable, VariableGroup};

pub fn variable_to_pb(variable: Variable) -> pb::Variable {
    pb::Variable {
        key: variable.key,
        value: variable.value.unwrap_or_default(),
        is_secret: variable.is_secret,
        environment_id: variable.environment_id.map_or(0, |id| id.get()),
        description: variable.description,
        updated_at: timestamp(variable.updated_at),
        updated_by: variable.updated_by.get(),
    }
}

pub fn group_to_pb(group: VariableGroup) -> pb::VariableGroup {
    pb::VariableGroup {
        id: group.id.get(),
        customer_id: group.customer_id.get(),
        name: group.settings.name,
        description: group.settings.description,
        variables: group.variables.into_iter().map(variable_to_pb).collect(),
        created_at: timestamp(group.created_at),
        updated_at: timestamp(group.updated_at),
        created_by: group.created_by.get(),
    }
}
