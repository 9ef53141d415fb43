//! Agents: registration, reads and operator changes. Liveness lives in `agent_liveness.rs`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait,
};

use super::entities::{agent, agent_label, customer, registration_token};
use super::{Store, StoreError, activity, convert, now};
use crate::auth::token::hashes_equal;
use crate::auth::{AuthenticatedAgent, TenantScope};
use crate::domain::agent::{registration_token_invalid, registration_token_used_up};
use crate::domain::agent_identity::{
    PresentedProof, REENROLMENT_TOKEN_LIFETIME, Reenrolment, Reregistration, check_reregistration,
};
use crate::domain::{
    Agent, AgentFigures, AgentFilter, AgentId, AgentPatch, AgentRegistration, AgentStatus,
    CustomerId, NewActivity, Page, PageRequest, RegistrationToken,
};

/// An agent found by its credential hash, for authentication.
#[derive(Debug, Clone)]
pub struct FoundAgent {
    pub agent: AuthenticatedAgent,
    pub credential_hash: String,
    /// The agent was deleted: its credential is recognised only to say so.
    pub deleted: bool,
}

/// Hashes of the proofs a registration presented besides its registration token.
#[derive(Debug, Clone, Default)]
pub struct PresentedHashes {
    pub current_credential_hash: Option<String>,
    pub reenrolment_token_hash: Option<String>,
}

impl PresentedHashes {
    /// Compares the presented hashes with the agent's stored ones, in constant time.
    fn check_against(&self, row: &agent::Model) -> PresentedProof {
        let current_credential_matches = self
            .current_credential_hash
            .as_deref()
            .is_some_and(|hash| hashes_equal(hash, &row.credential_hash));
        let reenrolment = match (
            self.reenrolment_token_hash.as_deref(),
            row.reenrolment_token_hash.as_deref(),
            row.reenrolment_expires_at,
        ) {
            (None, _, _) => Reenrolment::NotPresented,
            (Some(presented), Some(stored), Some(expires_at))
                if hashes_equal(presented, stored) =>
            {
                Reenrolment::Matches { expires_at }
            }
            (Some(_), _, _) => Reenrolment::DoesNotMatch,
        };
        PresentedProof {
            current_credential_matches,
            reenrolment,
        }
    }
}

/// What registration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    pub agent_id: AgentId,
    /// False when an existing agent (same uuid, same customer) was re-registered.
    pub created: bool,
}

/// Converts a row; `online_cutoff` turns an `online` row whose last heartbeat is older than that
/// into `offline` (its server may have died without saying so).
pub(super) fn agent_from_row(
    row: agent::Model,
    labels: Vec<String>,
    online_cutoff: DateTime<Utc>,
) -> Result<Agent, StoreError> {
    let stored = AgentStatus::from_db(&row.status).ok_or_else(|| {
        sea_orm::DbErr::Custom(format!("unknown agent status {:?} in database", row.status))
    })?;
    let fresh = row.last_seen_at.is_some_and(|seen| seen >= online_cutoff);
    let status = if stored == AgentStatus::Online && fresh {
        AgentStatus::Online
    } else {
        AgentStatus::Offline
    };
    let latest = match (
        row.cpu_percent,
        row.memory_percent,
        row.memory_used_bytes,
        row.memory_total_bytes,
        row.disk_free_bytes,
        row.load_average,
        row.last_seen_at,
    ) {
        (Some(cpu), Some(memory), Some(used), Some(total), Some(disk), Some(load), Some(at)) => {
            Some((
                AgentFigures {
                    cpu_percent: cpu,
                    memory_percent: memory,
                    memory_used_bytes: convert::unsigned(used),
                    memory_total_bytes: convert::unsigned(total),
                    disk_free_bytes: convert::unsigned(disk),
                    load_average: load,
                    running_jobs: u32::try_from(row.running_jobs).unwrap_or(0),
                },
                at,
            ))
        }
        _ => None,
    };
    Ok(Agent {
        id: AgentId::from_db(row.id),
        customer_id: CustomerId::from_db(row.customer_id),
        uuid: row.uuid,
        name: row.name,
        location: row.location,
        labels,
        hostname: row.hostname,
        os: row.os,
        arch: row.arch,
        version: row.version,
        max_concurrent_jobs: row.max_concurrent_jobs,
        enabled: row.enabled,
        status,
        last_seen_at: row.last_seen_at,
        registered_at: row.registered_at,
        updated_at: row.updated_at,
        latest,
    })
}

/// The labels of these agents, each list in insertion (alphabetical) order.
async fn labels_of(
    db: &impl ConnectionTrait,
    customer_id: CustomerId,
    agent_ids: &[i64],
) -> Result<HashMap<i64, Vec<String>>, StoreError> {
    let rows = agent_label::Entity::find()
        .filter(agent_label::Column::CustomerId.eq(customer_id.get()))
        .filter(agent_label::Column::AgentId.is_in(agent_ids.iter().copied()))
        .order_by_asc(agent_label::Column::Label)
        .all(db)
        .await?;
    let mut labels: HashMap<i64, Vec<String>> = HashMap::new();
    for row in rows {
        labels.entry(row.agent_id).or_default().push(row.label);
    }
    Ok(labels)
}

async fn replace_labels(
    db: &impl ConnectionTrait,
    customer_id: CustomerId,
    agent_id: i64,
    labels: &[String],
) -> Result<(), StoreError> {
    agent_label::Entity::delete_many()
        .filter(agent_label::Column::CustomerId.eq(customer_id.get()))
        .filter(agent_label::Column::AgentId.eq(agent_id))
        .exec(db)
        .await?;
    if !labels.is_empty() {
        agent_label::Entity::insert_many(labels.iter().map(|label| agent_label::ActiveModel {
            customer_id: Set(customer_id.get()),
            agent_id: Set(agent_id),
            label: Set(label.clone()),
        }))
        .exec(db)
        .await?;
    }
    Ok(())
}

/// One live agent row of the customer, or NOT_FOUND.
/// An agent's row with its labels joined by commas (none: `None`).
#[derive(Debug, sea_orm::FromQueryResult)]
struct AgentWithLabels {
    #[sea_orm(nested)]
    agent: agent::Model,
    labels: Option<String>,
}

async fn find_live_agent(
    db: &impl ConnectionTrait,
    customer_id: CustomerId,
    agent_id: AgentId,
) -> Result<agent::Model, StoreError> {
    agent::Entity::find_by_id(agent_id.get())
        .filter(agent::Column::CustomerId.eq(customer_id.get()))
        .filter(agent::Column::DeletedAt.is_null())
        .one(db)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("agent {agent_id} not found")))
}

impl Store {
    /// Registers (or re-registers) an agent, all or nothing: the token must be a live
    /// registration token of an active customer with uses left (an unknown customer, an inactive
    /// one and a wrong token get the same answer), and a uuid the customer already has needs its
    /// current credential or a re-enrolment token (`domain::agent_identity`). Re-registration
    /// keeps the agent id and replaces the credential, so the old one stops working.
    pub(crate) async fn register_agent(
        &self,
        registration: AgentRegistration,
        registration_token_hash: &str,
        presented: &PresentedHashes,
        credential_hash: &str,
    ) -> Result<Registered, StoreError> {
        let customer_id = registration.customer_id;
        let now = now();
        let transaction = self.begin_write().await?;

        let token = registration_token::Entity::find()
            .filter(registration_token::Column::TokenHash.eq(registration_token_hash))
            .filter(registration_token::Column::CustomerId.eq(customer_id.get()))
            .one(&transaction)
            .await?
            .filter(|token| {
                crate::auth::token::hashes_equal(&token.token_hash, registration_token_hash)
            })
            .map(RegistrationToken::from)
            .ok_or_else(|| registration_token_invalid(customer_id))?;
        let customer = customer::Entity::find_by_id(customer_id.get())
            .one(&transaction)
            .await?;
        if !customer.is_some_and(|customer| customer.is_active) {
            return Err(registration_token_invalid(customer_id).into());
        }
        token.check_usable(now)?;
        // Count the use with a conditional update, so concurrent registrations cannot exceed
        // the limit.
        let counted = registration_token::Entity::update_many()
            .col_expr(
                registration_token::Column::UseCount,
                Expr::col(registration_token::Column::UseCount).add(1),
            )
            .filter(registration_token::Column::Id.eq(token.id.get()))
            .filter(
                Condition::any()
                    .add(registration_token::Column::MaxUses.eq(0))
                    .add(
                        Expr::col(registration_token::Column::UseCount)
                            .lt(Expr::col(registration_token::Column::MaxUses)),
                    ),
            )
            .exec(&transaction)
            .await?;
        if counted.rows_affected == 0 {
            return Err(registration_token_used_up().into());
        }

        let existing = agent::Entity::find()
            .filter(agent::Column::CustomerId.eq(customer_id.get()))
            .filter(agent::Column::Uuid.eq(registration.uuid.as_str()))
            .one(&transaction)
            .await?;
        let mut restored = false;
        let (agent_id, created) = match existing {
            Some(row) => {
                let verdict = check_reregistration(
                    &row.uuid,
                    row.deleted_at.is_some(),
                    presented.check_against(&row),
                    now,
                )?;
                if verdict == Reregistration::Restore {
                    restored = true;
                    self.admit_one_more(&transaction, customer_id, crate::domain::Quota::Agents)
                        .await?;
                }
                let id = row.id;
                let mut row: agent::ActiveModel = row.into();
                row.name = Set(registration.name.clone());
                row.location = Set(registration.location.clone());
                row.hostname = Set(registration.hostname.clone());
                row.os = Set(registration.os.clone());
                row.arch = Set(registration.arch.clone());
                row.version = Set(registration.version.clone());
                row.max_concurrent_jobs = Set(registration.max_concurrent_jobs);
                row.credential_hash = Set(credential_hash.to_owned());
                row.reenrolment_token_hash = Set(None);
                row.reenrolment_expires_at = Set(None);
                row.deleted_at = Set(None);
                row.updated_at = Set(now);
                row.update(&transaction).await?;
                (id, false)
            }
            None => {
                // A new agent counts against the customer's quota; re-registering does not.
                self.admit_one_more(&transaction, customer_id, crate::domain::Quota::Agents)
                    .await?;
                let row = agent::ActiveModel {
                    customer_id: Set(customer_id.get()),
                    uuid: Set(registration.uuid.clone()),
                    name: Set(registration.name.clone()),
                    location: Set(registration.location.clone()),
                    hostname: Set(registration.hostname.clone()),
                    os: Set(registration.os.clone()),
                    arch: Set(registration.arch.clone()),
                    version: Set(registration.version.clone()),
                    max_concurrent_jobs: Set(registration.max_concurrent_jobs),
                    enabled: Set(true),
                    status: Set(AgentStatus::Offline.as_str().to_owned()),
                    credential_hash: Set(credential_hash.to_owned()),
                    connection_id: Set(None),
                    registered_at: Set(now),
                    updated_at: Set(now),
                    last_seen_at: Set(None),
                    deleted_at: Set(None),
                    cpu_percent: Set(None),
                    memory_percent: Set(None),
                    memory_used_bytes: Set(None),
                    memory_total_bytes: Set(None),
                    disk_free_bytes: Set(None),
                    load_average: Set(None),
                    running_jobs: Set(0),
                    reenrolment_token_hash: Set(None),
                    reenrolment_expires_at: Set(None),
                    ..Default::default()
                }
                .insert(&transaction)
                .await
                .map_err(|error| {
                    StoreError::on_unique_violation(error, |_| {
                        format!("agent uuid {:?} is already registered", registration.uuid)
                    })
                })?;
                (row.id, true)
            }
        };
        replace_labels(&transaction, customer_id, agent_id, &registration.labels).await?;
        activity::record(
            &transaction,
            customer_id,
            NewActivity {
                kind: if created {
                    "agent.registered"
                } else if restored {
                    "agent.restored"
                } else {
                    "agent.reregistered"
                },
                subject_type: "agent",
                subject_id: agent_id,
                message: format!(
                    "Agent {} {} (registration token {})",
                    registration.name,
                    if created {
                        "registered"
                    } else if restored {
                        "restored with a re-enrolment token"
                    } else {
                        "registered again"
                    },
                    token.token_prefix
                ),
                actor: None,
            },
            now,
        )
        .await?;
        transaction.commit().await?;
        Ok(Registered {
            agent_id: AgentId::from_db(agent_id),
            created,
        })
    }

    /// The agent whose credential has this hash, deleted or not.
    pub(crate) async fn find_agent_by_credential(
        &self,
        credential_hash: &str,
    ) -> Result<Option<FoundAgent>, StoreError> {
        let row = agent::Entity::find()
            .filter(agent::Column::CredentialHash.eq(credential_hash))
            .one(&self.db)
            .await?;
        Ok(row.map(|row| FoundAgent {
            agent: AuthenticatedAgent::new(
                AgentId::from_db(row.id),
                CustomerId::from_db(row.customer_id),
                row.uuid,
                row.name,
            ),
            credential_hash: row.credential_hash,
            deleted: row.deleted_at.is_some(),
        }))
    }

    /// The scope's agents by id, filtered by status (as of `online_cutoff`) and labels.
    pub async fn list_agents(
        &self,
        scope: &TenantScope,
        filter: &AgentFilter,
        page: PageRequest,
        online_cutoff: DateTime<Utc>,
    ) -> Result<Page<Agent>, StoreError> {
        let customer_id = scope.customer_id();
        let mut query = agent::Entity::find()
            .filter(agent::Column::CustomerId.eq(customer_id.get()))
            .filter(agent::Column::DeletedAt.is_null());
        let online = Condition::all()
            .add(agent::Column::Status.eq(AgentStatus::Online.as_str()))
            .add(agent::Column::LastSeenAt.gte(online_cutoff));
        query = match filter.status {
            Some(AgentStatus::Online) => query.filter(online),
            Some(AgentStatus::Offline) => query.filter(online.not()),
            None => query,
        };
        for label in &filter.labels {
            let carrying = agent_label::Entity::find()
                .select_only()
                .column(agent_label::Column::AgentId)
                .filter(agent_label::Column::CustomerId.eq(customer_id.get()))
                .filter(agent_label::Column::Label.eq(label.as_str()))
                .into_query();
            query = query.filter(agent::Column::Id.in_subquery(carrying));
        }
        if let Some(after) = page.after {
            query = query.filter(agent::Column::Id.gt(after));
        }
        let rows = query
            .order_by_asc(agent::Column::Id)
            .limit(page.fetch_limit())
            .all(&self.db)
            .await?;
        let page = Page::from_rows(rows, page, |row| row.id);
        let ids: Vec<i64> = page.items.iter().map(|row| row.id).collect();
        let mut labels = labels_of(&self.db, customer_id, &ids).await?;
        let mut items = Vec::with_capacity(page.items.len());
        for row in page.items {
            let agent_labels = labels.remove(&row.id).unwrap_or_default();
            items.push(agent_from_row(row, agent_labels, online_cutoff)?);
        }
        Ok(Page {
            items,
            next_page_token: page.next_page_token,
        })
    }

    /// One of the scope's agents.
    pub async fn get_agent(
        &self,
        scope: &TenantScope,
        agent_id: AgentId,
        online_cutoff: DateTime<Utc>,
    ) -> Result<Agent, StoreError> {
        // One query: the row with its labels aggregated beside it (labels hold no comma).
        let aggregated = match self.backend() {
            sea_orm::DbBackend::Postgres => "string_agg(label, ',')",
            _ => "group_concat(label, ',')",
        };
        let found = agent::Entity::find_by_id(agent_id.get())
            .filter(agent::Column::CustomerId.eq(scope.customer_id().get()))
            .filter(agent::Column::DeletedAt.is_null())
            .column_as(
                Expr::cust(format!(
                    "(SELECT {aggregated} FROM agent_labels WHERE agent_labels.customer_id = \
                     agents.customer_id AND agent_labels.agent_id = agents.id)"
                )),
                "labels",
            )
            .into_model::<AgentWithLabels>()
            .one(&self.db)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("agent {agent_id} not found")))?;
        let mut labels: Vec<String> = found
            .labels
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .filter(|label| !label.is_empty())
            .map(str::to_owned)
            .collect();
        labels.sort_unstable();
        agent_from_row(found.agent, labels, online_cutoff)
    }

    /// Applies a patch to one of the scope's agents.
    pub async fn update_agent(
        &self,
        scope: &TenantScope,
        agent_id: AgentId,
        patch: AgentPatch,
        online_cutoff: DateTime<Utc>,
    ) -> Result<Agent, StoreError> {
        let customer_id = scope.customer_id();
        let transaction = self.begin_write().await?;
        let current = find_live_agent(&transaction, customer_id, agent_id).await?;
        let mut row: agent::ActiveModel = current.into();
        if let Some(name) = patch.name {
            row.name = Set(name);
        }
        if let Some(location) = patch.location {
            row.location = Set(location);
        }
        if let Some(enabled) = patch.enabled {
            row.enabled = Set(enabled);
        }
        if let Some(max) = patch.max_concurrent_jobs {
            row.max_concurrent_jobs = Set(max);
        }
        row.updated_at = Set(now());
        let updated = row.update(&transaction).await?;
        if let Some(labels) = &patch.labels {
            replace_labels(&transaction, customer_id, updated.id, labels).await?;
        }
        let labels = labels_of(&transaction, customer_id, &[updated.id])
            .await?
            .remove(&updated.id)
            .unwrap_or_default();
        transaction.commit().await?;
        agent_from_row(updated, labels, online_cutoff)
    }

    /// Deletes one of the scope's agents: the row is kept (history refers to it, and it holds the
    /// uuid so the host cannot register it again unless an administrator allows it) but hidden,
    /// its credential is answered with "deleted" and its labels are dropped.
    pub async fn delete_agent(
        &self,
        scope: &TenantScope,
        agent_id: AgentId,
    ) -> Result<(), StoreError> {
        let customer_id = scope.customer_id();
        let now = now();
        let transaction = self.begin_write().await?;
        let current = find_live_agent(&transaction, customer_id, agent_id).await?;
        let name = current.name.clone();
        let mut row: agent::ActiveModel = current.into();
        row.deleted_at = Set(Some(now));
        row.updated_at = Set(now);
        row.status = Set(AgentStatus::Offline.as_str().to_owned());
        row.connection_id = Set(None);
        row.reenrolment_token_hash = Set(None);
        row.reenrolment_expires_at = Set(None);
        row.update(&transaction).await?;
        replace_labels(&transaction, customer_id, agent_id.get(), &[]).await?;
        activity::record(
            &transaction,
            customer_id,
            NewActivity {
                kind: "agent.deleted",
                subject_type: "agent",
                subject_id: agent_id.get(),
                message: format!("Agent {name} was deleted"),
                actor: Some(scope.actor()),
            },
            now,
        )
        .await?;
        transaction.commit().await?;
        Ok(())
    }
}

impl Store {
    /// Gives one of the scope's agents, live or deleted, a re-enrolment token (replacing any
    /// earlier one): with it the build host registers the uuid again without its current
    /// credential, and a deleted agent is restored. Returns the token's expiry.
    pub async fn issue_reenrolment_token(
        &self,
        scope: &TenantScope,
        agent_id: AgentId,
        token_hash: &str,
    ) -> Result<DateTime<Utc>, StoreError> {
        let customer_id = scope.customer_id();
        let now = now();
        let expires_at = now + REENROLMENT_TOKEN_LIFETIME;
        let transaction = self.begin_write().await?;
        let current = agent::Entity::find_by_id(agent_id.get())
            .filter(agent::Column::CustomerId.eq(customer_id.get()))
            .one(&transaction)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("agent {agent_id} not found")))?;
        let name = current.name.clone();
        let mut row: agent::ActiveModel = current.into();
        row.reenrolment_token_hash = Set(Some(token_hash.to_owned()));
        row.reenrolment_expires_at = Set(Some(expires_at));
        row.update(&transaction).await?;
        activity::record(
            &transaction,
            customer_id,
            NewActivity {
                kind: "agent.reenrolment_issued",
                subject_type: "agent",
                subject_id: agent_id.get(),
                message: format!("A re-enrolment token was issued for agent {name}"),
                actor: Some(scope.actor()),
            },
            now,
        )
        .await?;
        transaction.commit().await?;
        Ok(expires_at)
    }

    /// What dispatch needs of an agent: its labels, whether it is enabled and its capacity.
    pub async fn agent_work_settings(
        &self,
        agent: &AuthenticatedAgent,
    ) -> Result<(Vec<String>, bool, i32), StoreError> {
        let row = find_live_agent(&self.db, agent.customer_id(), agent.agent_id()).await?;
        let labels = labels_of(&self.db, agent.customer_id(), &[row.id])
            .await?
            .remove(&row.id)
            .unwrap_or_default();
        Ok((labels, row.enabled, row.max_concurrent_jobs))
    }
}
