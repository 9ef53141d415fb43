//! Variable groups and their variables. Secret values are sealed here, before they reach the
//! database, and never leave it again except through `secret values for a job` (dispatch).

use std::collections::HashMap;

use sea_orm::sea_query::{Expr, LockType};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction,
    DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::entities::{pipeline, variable, variable_group};
use super::environments::find_environment;
use super::{Store, StoreError, SystemStore, now};
use crate::auth::TenantScope;
use crate::domain::variable::{GroupSettings, NewVariable, Variable, VariableGroup};
use crate::domain::{
    CustomerId, EnvironmentId, Page, PageRequest, PipelineId, Refusal, UserId, VariableGroupId,
};
use crate::secrets::SecretBox;

/// What the sealed value of a variable is bound to: moved to another row, it does not open.
pub fn seal_context(customer_id: i64, group_id: i64, key: &str, environment_id: i64) -> String {
    format!("variable:{customer_id}:{group_id}:{key}:{environment_id}")
}

fn not_found(group_id: VariableGroupId) -> StoreError {
    StoreError::NotFound(format!("variable group {group_id} not found"))
}

fn duplicate_name(name: &str) -> impl FnOnce(&str) -> String + '_ {
    move |_| format!("a variable group named {name:?} already exists")
}

fn variable_from_row(row: variable::Model) -> Variable {
    Variable {
        value: (!row.is_secret).then_some(row.value),
        key: row.key,
        is_secret: row.is_secret,
        environment_id: (row.environment_id != 0)
            .then(|| EnvironmentId::from_db(row.environment_id)),
        description: row.description,
        updated_at: row.updated_at,
        updated_by: UserId::from_db(row.updated_by),
    }
}

fn group_from_rows(row: variable_group::Model, variables: Vec<variable::Model>) -> VariableGroup {
    VariableGroup {
        id: VariableGroupId::from_db(row.id),
        customer_id: CustomerId::from_db(row.customer_id),
        settings: GroupSettings {
            name: row.name,
            description: row.description,
        },
        variables: variables.into_iter().map(variable_from_row).collect(),
        created_by: UserId::from_db(row.created_by),
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

async fn find_group(
    db: &impl ConnectionTrait,
    scope: &TenantScope,
    group_id: VariableGroupId,
) -> Result<variable_group::Model, StoreError> {
    variable_group::Entity::find_by_id(group_id.get())
        .filter(variable_group::Column::CustomerId.eq(scope.customer_id().get()))
        .one(db)
        .await?
        .ok_or_else(|| not_found(group_id))
}

async fn variables_of(
    db: &impl ConnectionTrait,
    group_ids: &[i64],
) -> Result<HashMap<i64, Vec<variable::Model>>, StoreError> {
    let mut by_group: HashMap<i64, Vec<variable::Model>> = HashMap::new();
    if group_ids.is_empty() {
        return Ok(by_group);
    }
    let rows = variable::Entity::find()
        .filter(variable::Column::GroupId.is_in(group_ids.iter().copied()))
        .order_by_asc(variable::Column::Key)
        .order_by_asc(variable::Column::EnvironmentId)
        .all(db)
        .await?;
    for row in rows {
        by_group.entry(row.group_id).or_default().push(row);
    }
    Ok(by_group)
}

/// Refuses group ids that are not groups of the customer (INVALID_ARGUMENT naming the field).
pub(super) async fn check_groups(
    db: &impl ConnectionTrait,
    customer_id: CustomerId,
    group_ids: &[VariableGroupId],
) -> Result<(), StoreError> {
    if group_ids.is_empty() {
        return Ok(());
    }
    let found: Vec<i64> = variable_group::Entity::find()
        .select_only()
        .column(variable_group::Column::Id)
        .filter(variable_group::Column::CustomerId.eq(customer_id.get()))
        .filter(variable_group::Column::Id.is_in(group_ids.iter().map(|id| id.get())))
        .into_tuple()
        .all(db)
        .await?;
    match group_ids.iter().find(|id| !found.contains(&id.get())) {
        Some(missing) => Err(StoreError::InvalidArgument(format!(
            "variable_group_ids: {missing} is not a variable group of customer {customer_id}"
        ))),
        None => Ok(()),
    }
}

/// Refuses, for a role that may not manage secrets, what would hand secrets to code nobody who
/// may manage them wrote: attaching a group that holds secrets (`attached`: the groups a
/// request adds) or changing the steps or parameters (`code_changed`) of a pipeline whose
/// groups (`groups`: as the pipeline becomes) hold secrets. On PostgreSQL the groups' rows are share-locked first, so a secret
/// set in them at the same time (which updates its group's row) is either seen here or waits.
pub(super) async fn check_secret_authority(
    db: &DatabaseTransaction,
    scope: &TenantScope,
    pipeline: &str,
    groups: &[VariableGroupId],
    attached: &[VariableGroupId],
    code_changed: bool,
) -> Result<(), StoreError> {
    if crate::auth::require(scope, crate::auth::Action::ManageSecrets).is_ok()
        || (attached.is_empty() && !code_changed)
    {
        return Ok(());
    }
    let watched: Vec<i64> = if code_changed { groups } else { attached }
        .iter()
        .map(|id| id.get())
        .collect();
    if watched.is_empty() {
        return Ok(());
    }
    let customer_id = scope.customer_id();
    let mut lock = variable_group::Entity::find()
        .select_only()
        .column(variable_group::Column::Id)
        .filter(variable_group::Column::CustomerId.eq(customer_id.get()))
        .filter(variable_group::Column::Id.is_in(watched.iter().copied()));
    if db.get_database_backend() == DbBackend::Postgres {
        lock = lock.lock(LockType::Share);
    }
    lock.into_tuple::<i64>().all(db).await?;
    let holding: Vec<i64> = variable::Entity::find()
        .select_only()
        .column(variable::Column::GroupId)
        .distinct()
        .filter(variable::Column::CustomerId.eq(customer_id.get()))
        .filter(variable::Column::GroupId.is_in(watched.iter().copied()))
        .filter(variable::Column::IsSecret.eq(true))
        .into_tuple()
        .all(db)
        .await?;
    let Some(group) = watched.iter().find(|id| holding.contains(id)) else {
        return Ok(());
    };
    let what = if attached.iter().any(|id| id.get() == *group) {
        format!("attach variable group {group} to {pipeline}: the group holds secrets")
    } else {
        format!(
            "change the steps or parameters of {pipeline}: its variable group {group} holds secrets"
        )
    };
    Err(Refusal::NotPermitted(format!(
        "role {} may not {what} (only a role that may set secret variables may)",
        scope.role()
    ))
    .into())
}

impl Store {
    /// Whether a plain variable of `group_id` reaches code that gets secrets: the group holds a
    /// secret, or a live pipeline that uses it also uses a group that holds one. Such a variable
    /// (PATH, BASH_ENV, …) changes what that code does, so only secret managers write it.
    pub async fn group_feeds_secrets(
        &self,
        scope: &TenantScope,
        group_id: VariableGroupId,
    ) -> Result<bool, StoreError> {
        let customer_id = scope.customer_id();
        // Few per customer (the `pipelines` quota bounds them): read and filter here.
        let rows: Vec<String> = pipeline::Entity::find()
            .select_only()
            .column(pipeline::Column::VariableGroupIds)
            .filter(pipeline::Column::CustomerId.eq(customer_id.get()))
            .filter(pipeline::Column::DeletedAt.is_null())
            .filter(pipeline::Column::VariableGroupIds.ne("[]"))
            .into_tuple()
            .all(&self.db)
            .await?;
        let mut related = vec![group_id];
        for text in rows {
            let groups = super::pipelines::group_ids_from_text(&text)?;
            if groups.contains(&group_id) {
                related.extend(groups);
            }
        }
        related.sort();
        related.dedup();
        Ok(!secret_keys_of_groups(&self.db, customer_id, &related)
            .await?
            .is_empty())
    }
}

/// A variable as a job gets it.
#[derive(Clone, PartialEq, Eq)]
pub struct JobVariable {
    pub key: String,
    pub value: String,
    pub is_secret: bool,
}

/// What a job's variables resolve to when it is delivered.
#[derive(Debug)]
pub enum JobVariables {
    Ready(Vec<JobVariable>),
    /// A secret does not open with the server's keys, and will not on a retry; the reason
    /// names the secret (never its value).
    Unopenable(String),
}

impl std::fmt::Debug for JobVariable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobVariable")
            .field("key", &self.key)
            .field("is_secret", &self.is_secret)
            .finish_non_exhaustive()
    }
}

/// Inserts or replaces one variable of a group (sealing a secret first), inside the caller's
/// transaction.
async fn write_variable(
    db: &impl ConnectionTrait,
    scope: &TenantScope,
    group_id: i64,
    new: NewVariable,
    secrets: &SecretBox,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<variable::Model, StoreError> {
    let customer = scope.customer_id();
    let environment = new.environment_id.map_or(0, EnvironmentId::get);
    if let Some(environment_id) = new.environment_id
        && find_environment(db, customer, environment_id)
            .await?
            .is_none()
    {
        return Err(StoreError::InvalidArgument(format!(
            "environment_id {environment_id} is not an environment of customer {customer}"
        )));
    }
    let (value, cipher) = if new.is_secret {
        let context = seal_context(customer.get(), group_id, &new.key, environment);
        let sealed = secrets.seal(&new.value, &context).map_err(|error| {
            StoreError::Internal(sea_orm::DbErr::Custom(format!("sealing a secret: {error}")))
        })?;
        (String::new(), Some(sealed))
    } else {
        (new.value, None)
    };
    let existing = variable::Entity::find()
        .filter(variable::Column::GroupId.eq(group_id))
        .filter(variable::Column::Key.eq(new.key.as_str()))
        .filter(variable::Column::EnvironmentId.eq(environment))
        .one(db)
        .await?;
    let fill = |mut row: variable::ActiveModel| {
        row.is_secret = Set(new.is_secret);
        row.value = Set(value);
        row.cipher = Set(cipher);
        row.description = Set(new.description);
        row.updated_by = Set(scope.actor().get());
        row.updated_at = Set(at);
        row
    };
    let stored = match existing {
        Some(existing) => fill(existing.into()).update(db).await?,
        None => {
            fill(variable::ActiveModel {
                customer_id: Set(customer.get()),
                group_id: Set(group_id),
                key: Set(new.key.clone()),
                environment_id: Set(environment),
                ..Default::default()
            })
            .insert(db)
            .await?
        }
    };
    Ok(stored)
}

/// Keys of the secret variables in `groups` (for any environment).
pub(super) async fn secret_keys_of_groups(
    db: &impl ConnectionTrait,
    customer_id: CustomerId,
    groups: &[VariableGroupId],
) -> Result<Vec<String>, StoreError> {
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    Ok(variable::Entity::find()
        .select_only()
        .column(variable::Column::Key)
        .filter(variable::Column::CustomerId.eq(customer_id.get()))
        .filter(variable::Column::GroupId.is_in(groups.iter().map(|id| id.get())))
        .filter(variable::Column::IsSecret.eq(true))
        .into_tuple::<String>()
        .all(db)
        .await?)
}

impl Store {
    /// Keys of the secret variables a pipeline's jobs get (parameters may not override them).
    pub async fn secret_keys_of_pipeline(
        &self,
        scope: &TenantScope,
        pipeline_id: PipelineId,
    ) -> Result<Vec<String>, StoreError> {
        let Some(pipeline) = pipeline::Entity::find_by_id(pipeline_id.get())
            .filter(pipeline::Column::CustomerId.eq(scope.customer_id().get()))
            .one(&self.db)
            .await?
        else {
            return Ok(Vec::new());
        };
        let groups = super::pipelines::group_ids_from_row(&pipeline)?;
        secret_keys_of_groups(&self.db, scope.customer_id(), &groups).await
    }

    /// Creates a group with its first variables, all or nothing.
    pub async fn create_variable_group(
        &self,
        scope: &TenantScope,
        settings: GroupSettings,
        variables: Vec<NewVariable>,
        secrets: &SecretBox,
    ) -> Result<VariableGroup, StoreError> {
        let at = now();
        let transaction = self.begin_write().await?;
        self.admit_one_more(
            &transaction,
            scope.customer_id(),
            crate::domain::Quota::VariableGroups,
        )
        .await?;
        let row = variable_group::ActiveModel {
            customer_id: Set(scope.customer_id().get()),
            name: Set(settings.name.clone()),
            description: Set(settings.description),
            created_by: Set(scope.actor().get()),
            created_at: Set(at),
            updated_at: Set(at),
            ..Default::default()
        }
        .insert(&transaction)
        .await
        .map_err(|error| StoreError::on_unique_violation(error, duplicate_name(&settings.name)))?;
        let mut stored = Vec::with_capacity(variables.len());
        for (index, new) in variables.into_iter().enumerate() {
            stored.push(
                write_variable(&transaction, scope, row.id, new, secrets, at)
                    .await
                    .map_err(|error| match error {
                        StoreError::InvalidArgument(message) => {
                            StoreError::InvalidArgument(format!("variables[{index}].{message}"))
                        }
                        other => other,
                    })?,
            );
        }
        transaction.commit().await?;
        stored.sort_by(|a, b| (&a.key, a.environment_id).cmp(&(&b.key, b.environment_id)));
        Ok(group_from_rows(row, stored))
    }

    pub async fn get_variable_group(
        &self,
        scope: &TenantScope,
        group_id: VariableGroupId,
    ) -> Result<VariableGroup, StoreError> {
        let row = find_group(&self.db, scope, group_id).await?;
        let mut variables = variables_of(&self.db, &[row.id]).await?;
        let own = variables.remove(&row.id).unwrap_or_default();
        Ok(group_from_rows(row, own))
    }

    pub async fn list_variable_groups(
        &self,
        scope: &TenantScope,
        page: PageRequest,
    ) -> Result<Page<VariableGroup>, StoreError> {
        let mut query = variable_group::Entity::find()
            .filter(variable_group::Column::CustomerId.eq(scope.customer_id().get()));
        if let Some(after) = page.after {
            query = query.filter(variable_group::Column::Id.gt(after));
        }
        let rows = query
            .order_by_asc(variable_group::Column::Id)
            .limit(page.fetch_limit())
            .all(&self.db)
            .await?;
        let rows = Page::from_rows(rows, page, |row| row.id);
        let ids: Vec<i64> = rows.items.iter().map(|row| row.id).collect();
        let mut variables = variables_of(&self.db, &ids).await?;
        Ok(rows.map(|row| {
            let own = variables.remove(&row.id).unwrap_or_default();
            group_from_rows(row, own)
        }))
    }

    pub async fn update_variable_group(
        &self,
        scope: &TenantScope,
        group_id: VariableGroupId,
        name: Option<String>,
        description: Option<String>,
    ) -> Result<VariableGroup, StoreError> {
        let transaction = self.begin_write().await?;
        let current = find_group(&transaction, scope, group_id).await?;
        let mut row: variable_group::ActiveModel = current.into();
        if let Some(name) = &name {
            row.name = Set(name.clone());
        }
        if let Some(description) = description {
            row.description = Set(description);
        }
        row.updated_at = Set(now());
        let updated = row.update(&transaction).await.map_err(|error| {
            StoreError::on_unique_violation(error, duplicate_name(name.as_deref().unwrap_or("")))
        })?;
        let mut variables = variables_of(&transaction, &[updated.id]).await?;
        transaction.commit().await?;
        let own = variables.remove(&updated.id).unwrap_or_default();
        Ok(group_from_rows(updated, own))
    }

    /// Removes a group and its variables, both or neither.
    pub async fn delete_variable_group(
        &self,
        scope: &TenantScope,
        group_id: VariableGroupId,
    ) -> Result<(), StoreError> {
        let transaction = self.begin_write().await?;
        let row = find_group(&transaction, scope, group_id).await?;
        let pipelines = pipeline::Entity::find()
            .filter(pipeline::Column::CustomerId.eq(scope.customer_id().get()))
            .filter(pipeline::Column::DeletedAt.is_null())
            .all(&transaction)
            .await?;
        for pipeline in pipelines {
            if super::pipelines::group_ids_from_row(&pipeline)?.contains(&group_id) {
                return Err(StoreError::FailedPrecondition(format!(
                    "variable group {group_id} is used by pipeline {:?} ({}); remove it there first",
                    pipeline.name, pipeline.id
                )));
            }
        }
        variable::Entity::delete_many()
            .filter(variable::Column::GroupId.eq(row.id))
            .exec(&transaction)
            .await?;
        variable_group::Entity::delete_by_id(row.id)
            .exec(&transaction)
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// The variable with this key and environment in the group, if any (whether it is secret
    /// decides who may change it).
    pub async fn find_variable(
        &self,
        scope: &TenantScope,
        group_id: VariableGroupId,
        key: &str,
        environment_id: Option<EnvironmentId>,
    ) -> Result<Option<Variable>, StoreError> {
        let group = find_group(&self.db, scope, group_id).await?;
        Ok(variable::Entity::find()
            .filter(variable::Column::GroupId.eq(group.id))
            .filter(variable::Column::Key.eq(key))
            .filter(
                variable::Column::EnvironmentId.eq(environment_id.map_or(0, EnvironmentId::get)),
            )
            .one(&self.db)
            .await?
            .map(variable_from_row))
    }

    /// The variable with this key and environment in the group; NOT_FOUND naming it otherwise.
    pub async fn get_variable(
        &self,
        scope: &TenantScope,
        group_id: VariableGroupId,
        key: &str,
        environment_id: Option<EnvironmentId>,
    ) -> Result<Variable, StoreError> {
        self.find_variable(scope, group_id, key, environment_id)
            .await?
            .ok_or_else(|| {
                StoreError::NotFound(format!("variable {key} not found in group {group_id}"))
            })
    }

    /// Creates or replaces the variable with this key and environment; a secret value is sealed
    /// with `secrets` first and only its ciphertext is written.
    pub async fn set_variable(
        &self,
        scope: &TenantScope,
        group_id: VariableGroupId,
        new: NewVariable,
        secrets: &SecretBox,
    ) -> Result<Variable, StoreError> {
        let at = now();
        let transaction = self.begin_write().await?;
        let group = find_group(&transaction, scope, group_id).await?;
        let stored = write_variable(&transaction, scope, group.id, new, secrets, at).await?;
        variable_group::Entity::update_many()
            .col_expr(variable_group::Column::UpdatedAt, Expr::value(at))
            .filter(variable_group::Column::Id.eq(group.id))
            .exec(&transaction)
            .await?;
        transaction.commit().await?;
        Ok(variable_from_row(stored))
    }

    pub async fn delete_variable(
        &self,
        scope: &TenantScope,
        group_id: VariableGroupId,
        key: &str,
        environment_id: Option<EnvironmentId>,
    ) -> Result<(), StoreError> {
        let transaction = self.begin_write().await?;
        let group = find_group(&transaction, scope, group_id).await?;
        let deleted = variable::Entity::delete_many()
            .filter(variable::Column::GroupId.eq(group.id))
            .filter(variable::Column::Key.eq(key))
            .filter(
                variable::Column::EnvironmentId.eq(environment_id.map_or(0, EnvironmentId::get)),
            )
            .exec(&transaction)
            .await?;
        if deleted.rows_affected == 0 {
            return Err(StoreError::NotFound(format!(
                "variable {key} not found in group {group_id}"
            )));
        }
        variable_group::Entity::update_many()
            .col_expr(variable_group::Column::UpdatedAt, Expr::value(now()))
            .filter(variable_group::Column::Id.eq(group.id))
            .exec(&transaction)
            .await?;
        transaction.commit().await?;
        Ok(())
    }
}

/// Whether a deploy passed its environment's approval (what its environment's secrets need).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageGate {
    /// The environment needs no approval, or the stage was approved.
    Open,
    /// The environment requires an approval and the stage has none.
    NotApproved,
}

impl SystemStore {
    /// The variables a job gets from its pipeline's `groups`, for `environment` (a deploy's stage) or none:
    /// the pipeline's groups in order, a later group winning for the same key, and within a
    /// group the value for the environment winning over the one for every environment. Secrets
    /// are opened with `secrets`. A secret for the environment is opened only for a stage that
    /// passed the environment's approval (`environment` says whether it did, [`StageGate`]).
    pub(crate) async fn job_variables(
        &self,
        customer_id: CustomerId,
        groups: &[VariableGroupId],
        environment: Option<(EnvironmentId, StageGate)>,
        secrets: &SecretBox,
    ) -> Result<JobVariables, StoreError> {
        if groups.is_empty() {
            return Ok(JobVariables::Ready(Vec::new()));
        }
        let ids: Vec<i64> = groups.iter().map(|id| id.get()).collect();
        let rows = variable::Entity::find()
            .filter(variable::Column::CustomerId.eq(customer_id.get()))
            .filter(variable::Column::GroupId.is_in(ids.iter().copied()))
            .all(&self.db)
            .await?;
        let wanted = environment.map_or(0, |(id, _)| id.get());
        let gated = matches!(environment, Some((_, StageGate::NotApproved)));
        // Rank: group position first, then the environment's own value over the shared one.
        let mut chosen: std::collections::BTreeMap<String, ((usize, bool), variable::Model)> =
            std::collections::BTreeMap::new();
        for row in rows {
            if row.environment_id != 0 && row.environment_id != wanted {
                continue;
            }
            let Some(position) = ids.iter().position(|id| *id == row.group_id) else {
                continue;
            };
            let rank = (position, row.environment_id != 0);
            if chosen.get(&row.key).is_none_or(|(best, _)| rank > *best) {
                chosen.insert(row.key.clone(), (rank, row));
            }
        }
        Ok(chosen
            .into_values()
            .map(|(_, row)| {
                if gated && row.is_secret && row.environment_id != 0 {
                    return Err(format!(
                        "secret {} of variable group {} belongs to environment {}, which requires an approval this stage does not have",
                        row.key, row.group_id, row.environment_id
                    ));
                }
                let value = match (&row.cipher, row.is_secret) {
                    (Some(sealed), true) => secrets
                        .open(
                            sealed,
                            &seal_context(
                                row.customer_id,
                                row.group_id,
                                &row.key,
                                row.environment_id,
                            ),
                        )
                        .map_err(|error| {
                            format!(
                                "secret {} of variable group {} cannot be opened: {error}",
                                row.key, row.group_id
                            )
                        })?,
                    _ => row.value.clone(),
                };
                Ok(JobVariable {
                    key: row.key,
                    value,
                    is_secret: row.is_secret,
                })
            })
            .collect::<Result<Vec<_>, String>>()
            .map_or_else(JobVariables::Unopenable, JobVariables::Ready))
    }

    /// Re-seals every secret sealed under another key than the current one (after a key
    /// rotation); returns how many. Each value is opened and sealed again in one transaction.
    pub(crate) async fn reseal_secrets(&self, secrets: &SecretBox) -> Result<usize, StoreError> {
        let transaction = self.begin_write().await?;
        let rows = variable::Entity::find()
            .filter(variable::Column::IsSecret.eq(true))
            .all(&transaction)
            .await?;
        let mut resealed = 0;
        for row in rows {
            let Some(sealed) = row.cipher.clone() else {
                continue;
            };
            if !secrets.needs_reseal(&sealed) {
                continue;
            }
            let context = seal_context(row.customer_id, row.group_id, &row.key, row.environment_id);
            let plain = secrets.open(&sealed, &context).map_err(|error| {
                StoreError::FailedPrecondition(format!(
                    "secret {} of variable group {} cannot be re-encrypted: {error}",
                    row.key, row.group_id
                ))
            })?;
            let fresh = secrets.seal(&plain, &context).map_err(|error| {
                StoreError::Internal(sea_orm::DbErr::Custom(format!("sealing a secret: {error}")))
            })?;
            let mut active: variable::ActiveModel = row.into();
            active.cipher = Set(Some(fresh));
            active.update(&transaction).await?;
            resealed += 1;
        }
        transaction.commit().await?;
        Ok(resealed)
    }
}
