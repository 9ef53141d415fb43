//! Which agent runs which monitor, and what the agents report.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, LockType};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use super::entities::{agent, agent_label, monitor, monitor_result};
use super::monitors::{settings_from_row, status_from_db};
use super::{Store, StoreError, SystemStore, activity};
use crate::auth::AuthenticatedAgent;
use crate::domain::monitor::{CheckReport, MonitorSettings, MonitorStatus};
use crate::domain::pipeline::AgentSelector;
use crate::domain::{AgentId, AgentStatus, CustomerId, MonitorId, NewActivity};

/// Why a monitor has no agent.
const NO_AGENT: &str = "no online agent of the customer matches the monitor's agent selector";

/// An online agent that may take monitors.
struct Candidate {
    id: i64,
    labels: HashSet<String>,
}

impl Candidate {
    fn matches(&self, selector: &AgentSelector) -> bool {
        selector.agent_id.is_none_or(|id| id.get() == self.id)
            && selector
                .labels
                .iter()
                .all(|label| self.labels.contains(label))
    }
}

/// The customer's agents that are online (seen since `online_cutoff`), enabled and not deleted,
/// with their labels, by id.
async fn candidates(
    db: &impl sea_orm::ConnectionTrait,
    customer_id: CustomerId,
    online_cutoff: DateTime<Utc>,
) -> Result<Vec<Candidate>, StoreError> {
    let ids: Vec<i64> = agent::Entity::find()
        .select_only()
        .column(agent::Column::Id)
        .filter(agent::Column::CustomerId.eq(customer_id.get()))
        .filter(agent::Column::DeletedAt.is_null())
        .filter(agent::Column::Enabled.eq(true))
        .filter(agent::Column::Status.eq(AgentStatus::Online.as_str()))
        .filter(agent::Column::LastSeenAt.gte(online_cutoff))
        .order_by_asc(agent::Column::Id)
        .into_tuple()
        .all(db)
        .await?;
    let mut labels: HashMap<i64, HashSet<String>> = HashMap::new();
    if !ids.is_empty() {
        for row in agent_label::Entity::find()
            .filter(agent_label::Column::CustomerId.eq(customer_id.get()))
            .filter(agent_label::Column::AgentId.is_in(ids.iter().copied()))
            .all(db)
            .await?
        {
            labels.entry(row.agent_id).or_default().insert(row.label);
        }
    }
    Ok(ids
        .into_iter()
        .map(|id| Candidate {
            id,
            labels: labels.remove(&id).unwrap_or_default(),
        })
        .collect())
}

/// Chooses an agent for every monitor: a monitor stays where it is while its agent can run it;
/// the others go to the eligible agent with the fewest monitors; then monitors move from the
/// busiest agents to idler eligible ones until no agent has two more than another.
fn assign(
    monitors: &[(i64, Option<i64>, AgentSelector)],
    candidates: &[Candidate],
) -> BTreeMap<i64, Option<i64>> {
    let mut load: BTreeMap<i64, usize> = candidates.iter().map(|c| (c.id, 0)).collect();
    let mut chosen: BTreeMap<i64, Option<i64>> = BTreeMap::new();
    let eligible = |selector: &AgentSelector| -> Vec<i64> {
        candidates
            .iter()
            .filter(|candidate| candidate.matches(selector))
            .map(|candidate| candidate.id)
            .collect()
    };
    let mut waiting = Vec::new();
    for (monitor_id, current, selector) in monitors {
        match current {
            Some(agent_id) if eligible(selector).contains(agent_id) => {
                *load.entry(*agent_id).or_default() += 1;
                chosen.insert(*monitor_id, Some(*agent_id));
            }
            _ => waiting.push((*monitor_id, selector)),
        }
    }
    for (monitor_id, selector) in waiting {
        let best = eligible(selector)
            .into_iter()
            .min_by_key(|agent_id| (load.get(agent_id).copied().unwrap_or(0), *agent_id));
        if let Some(agent_id) = best {
            *load.entry(agent_id).or_default() += 1;
        }
        chosen.insert(monitor_id, best);
    }
    // Spread: move a monitor from a busiest agent to an idlest eligible one while that evens
    // things out. Each move lowers the sum of squared loads, so this ends.
    loop {
        let mut moved = false;
        for (monitor_id, _, selector) in monitors {
            let Some(Some(from)) = chosen.get(monitor_id).copied() else {
                continue;
            };
            let from_load = load.get(&from).copied().unwrap_or(0);
            let target = eligible(selector)
                .into_iter()
                .filter(|agent_id| *agent_id != from)
                .min_by_key(|agent_id| (load.get(agent_id).copied().unwrap_or(0), *agent_id));
            if let Some(to) = target
                && load.get(&to).copied().unwrap_or(0) + 1 < from_load
            {
                *load.entry(from).or_default() -= 1;
                *load.entry(to).or_default() += 1;
                chosen.insert(*monitor_id, Some(to));
                moved = true;
            }
        }
        if !moved {
            return chosen;
        }
    }
}

fn status_event(
    name: &str,
    monitor_id: i64,
    status: MonitorStatus,
    report: &CheckReport,
    threshold_ms: i32,
) -> NewActivity {
    let message = match status {
        MonitorStatus::Healthy => {
            format!("Service {name:?} is healthy ({} ms)", report.response_ms)
        }
        MonitorStatus::Warning => format!(
            "Service {name:?} warning - slow response ({} ms, threshold {threshold_ms} ms)",
            report.response_ms
        ),
        MonitorStatus::Down => format!("Service {name:?} is down: {}", report.message),
        MonitorStatus::Unknown => format!("Service {name:?} status unknown"),
    };
    NewActivity {
        kind: match status {
            MonitorStatus::Healthy => "monitor.healthy",
            MonitorStatus::Warning => "monitor.warning",
            MonitorStatus::Down => "monitor.down",
            MonitorStatus::Unknown => "monitor.unknown",
        },
        subject_type: "monitor",
        subject_id: monitor_id,
        message,
        actor: None,
    }
}

impl Store {
    /// Stores what `agent` found for one of its monitors: the result, the monitor's latest
    /// status, and an activity event when the status differs from the previous result's. A report
    /// about a monitor that is not (or no longer) the agent's is ignored. Returns the new status.
    pub async fn record_monitor_check(
        &self,
        agent: &AuthenticatedAgent,
        report: CheckReport,
    ) -> Result<Option<MonitorStatus>, StoreError> {
        let transaction = self.begin_write().await?;
        let Some(row) = monitor::Entity::find_by_id(report.monitor_id.get())
            .filter(monitor::Column::CustomerId.eq(agent.customer_id().get()))
            .filter(monitor::Column::AssignedAgentId.eq(agent.agent_id().get()))
            .one(&transaction)
            .await?
        else {
            return Ok(None);
        };
        let status =
            MonitorStatus::of_check(report.up, report.response_ms, row.warning_threshold_ms);
        let previous = monitor_result::Entity::find()
            .select_only()
            .column(monitor_result::Column::Status)
            .filter(monitor_result::Column::MonitorId.eq(row.id))
            .order_by_desc(monitor_result::Column::Id)
            .into_tuple::<String>()
            .one(&transaction)
            .await?
            .map(|value| status_from_db(&value))
            .transpose()?;
        let response_ms = if report.up { report.response_ms } else { 0 };
        monitor_result::ActiveModel {
            customer_id: Set(row.customer_id),
            monitor_id: Set(row.id),
            agent_id: Set(Some(agent.agent_id().get())),
            checked_at: Set(report.checked_at),
            status: Set(status.as_str().to_owned()),
            response_ms: Set(response_ms),
            http_status: Set(report.http_status),
            message: Set(report.message.clone()),
            ..Default::default()
        }
        .insert(&transaction)
        .await?;
        monitor::Entity::update_many()
            .col_expr(monitor::Column::Status, Expr::value(status.as_str()))
            .col_expr(monitor::Column::LastResponseMs, Expr::value(response_ms))
            .col_expr(
                monitor::Column::LastCheckedAt,
                Expr::value(report.checked_at),
            )
            .col_expr(
                monitor::Column::LastMessage,
                Expr::value(report.message.clone()),
            )
            .filter(monitor::Column::Id.eq(row.id))
            .exec(&transaction)
            .await?;
        if previous != Some(status) {
            activity::record(
                &transaction,
                agent.customer_id(),
                status_event(&row.name, row.id, status, &report, row.warning_threshold_ms),
                report.checked_at,
            )
            .await?;
        }
        super::usage::add_usage(
            &transaction,
            agent.customer_id(),
            super::now(),
            super::usage::UsageDelta {
                monitor_checks: 1,
                ..Default::default()
            },
        )
        .await?;
        transaction.commit().await?;
        Ok(Some(status))
    }
}

impl SystemStore {
    /// Re-decides which agent runs each of the customer's monitors (see [`assign`]). On
    /// PostgreSQL the customer's monitor rows are locked first, so replicas rebalancing the same
    /// customer take turns.
    pub(crate) async fn rebalance_monitors(
        &self,
        customer_id: CustomerId,
        online_cutoff: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let transaction = self.begin_write().await?;
        let mut query = monitor::Entity::find()
            .filter(monitor::Column::CustomerId.eq(customer_id.get()))
            .order_by_asc(monitor::Column::Id);
        if self.backend() == DbBackend::Postgres {
            query = query.lock(LockType::Update);
        }
        let rows = query.all(&transaction).await?;
        if rows.is_empty() {
            return Ok(());
        }
        let monitors = rows
            .iter()
            .map(|row| {
                Ok((
                    row.id,
                    row.assigned_agent_id,
                    settings_from_row(row)?.selector,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let candidates = candidates(&transaction, customer_id, online_cutoff).await?;
        let chosen = assign(&monitors, &candidates);
        for row in &rows {
            let next = chosen.get(&row.id).copied().flatten();
            if next == row.assigned_agent_id {
                continue;
            }
            let mut update = monitor::Entity::update_many()
                .col_expr(monitor::Column::AssignedAgentId, Expr::value(next))
                .filter(monitor::Column::Id.eq(row.id));
            if next.is_none() {
                update = update
                    .col_expr(
                        monitor::Column::Status,
                        Expr::value(MonitorStatus::Unknown.as_str()),
                    )
                    .col_expr(monitor::Column::LastMessage, Expr::value(NO_AGENT));
            }
            update.exec(&transaction).await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Customers with a monitor whose agent is gone (offline, disabled, deleted) or without an
    /// agent while the customer has one online: what the periodic rebalance looks at.
    pub(crate) async fn customers_needing_rebalance(
        &self,
        online_cutoff: DateTime<Utc>,
    ) -> Result<Vec<CustomerId>, StoreError> {
        let placements: Vec<(i64, Option<i64>)> = monitor::Entity::find()
            .select_only()
            .column(monitor::Column::CustomerId)
            .column(monitor::Column::AssignedAgentId)
            .distinct()
            .into_tuple()
            .all(&self.db)
            .await?;
        if placements.is_empty() {
            return Ok(Vec::new());
        }
        let customers: HashSet<i64> = placements.iter().map(|(customer, _)| *customer).collect();
        let online: Vec<(i64, i64)> = agent::Entity::find()
            .select_only()
            .column(agent::Column::Id)
            .column(agent::Column::CustomerId)
            .filter(agent::Column::CustomerId.is_in(customers.iter().copied()))
            .filter(agent::Column::DeletedAt.is_null())
            .filter(agent::Column::Enabled.eq(true))
            .filter(agent::Column::Status.eq(AgentStatus::Online.as_str()))
            .filter(agent::Column::LastSeenAt.gte(online_cutoff))
            .into_tuple()
            .all(&self.db)
            .await?;
        let online_agents: HashSet<i64> = online.iter().map(|(id, _)| *id).collect();
        let with_agents: HashSet<i64> = online.iter().map(|(_, customer)| *customer).collect();
        let mut needing: Vec<CustomerId> = placements
            .iter()
            .filter(|(customer, assigned)| match assigned {
                Some(agent_id) => !online_agents.contains(agent_id),
                None => with_agents.contains(customer),
            })
            .map(|(customer, _)| *customer)
            .collect::<HashSet<_>>()
            .into_iter()
            .map(CustomerId::from_db)
            .collect();
        needing.sort();
        Ok(needing)
    }

    /// The monitors assigned to each of `agents`, as they run them.
    pub(crate) async fn monitor_checks_for(
        &self,
        agents: &[AgentId],
    ) -> Result<HashMap<AgentId, Vec<(MonitorId, MonitorSettings)>>, StoreError> {
        let mut checks: HashMap<AgentId, Vec<(MonitorId, MonitorSettings)>> = agents
            .iter()
            .map(|agent_id| (*agent_id, Vec::new()))
            .collect();
        if agents.is_empty() {
            return Ok(checks);
        }
        let rows = monitor::Entity::find()
            .filter(monitor::Column::AssignedAgentId.is_in(agents.iter().map(|id| id.get())))
            .order_by_asc(monitor::Column::Id)
            .all(&self.db)
            .await?;
        for row in rows {
            let Some(agent_id) = row.assigned_agent_id.map(AgentId::from_db) else {
                continue;
            };
            let settings = settings_from_row(&row)?;
            checks
                .entry(agent_id)
                .or_default()
                .push((MonitorId::from_db(row.id), settings));
        }
        Ok(checks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(id: i64, labels: &[&str]) -> Candidate {
        Candidate {
            id,
            labels: labels.iter().map(|label| (*label).to_owned()).collect(),
        }
    }

    fn any() -> AgentSelector {
        AgentSelector::default()
    }

    #[test]
    fn monitors_spread_stay_put_and_follow_selectors() {
        let agents = [
            candidate(1, &["linux"]),
            candidate(2, &[]),
            candidate(3, &[]),
        ];
        // Six new monitors spread two per agent.
        let monitors: Vec<_> = (10..16).map(|id| (id, None, any())).collect();
        let chosen = assign(&monitors, &agents);
        let mut load: BTreeMap<i64, usize> = BTreeMap::new();
        for agent_id in chosen.values().flatten() {
            *load.entry(*agent_id).or_default() += 1;
        }
        assert_eq!(load.values().copied().collect::<Vec<_>>(), [2, 2, 2]);

        // Placed monitors stay where they are while that is balanced.
        let placed: Vec<_> = chosen
            .iter()
            .map(|(id, agent)| (*id, *agent, any()))
            .collect();
        assert_eq!(assign(&placed, &agents), chosen);

        // Agent 3 goes away: its monitors go to the others.
        let fewer = [candidate(1, &["linux"]), candidate(2, &[])];
        let moved = assign(&placed, &fewer);
        assert!(
            moved
                .values()
                .all(|agent| matches!(agent, Some(1) | Some(2)))
        );
        assert_eq!(moved.values().filter(|agent| **agent == Some(1)).count(), 3);

        // A selector limits the choice; nothing eligible means no agent.
        let picky = vec![
            (
                20,
                None,
                AgentSelector {
                    agent_id: None,
                    labels: vec!["linux".into()],
                },
            ),
            (
                21,
                None,
                AgentSelector {
                    agent_id: Some(AgentId::from_db(2)),
                    labels: vec![],
                },
            ),
            (
                22,
                None,
                AgentSelector {
                    agent_id: None,
                    labels: vec!["windows".into()],
                },
            ),
        ];
        let chosen = assign(&picky, &agents);
        assert_eq!(chosen[&20], Some(1));
        assert_eq!(chosen[&21], Some(2));
        assert_eq!(chosen[&22], None);

        // A piled-up agent sheds monitors to a new one.
        let piled: Vec<_> = (30..36).map(|id| (id, Some(1), any())).collect();
        let spread = assign(&piled, &[candidate(1, &[]), candidate(2, &[])]);
        assert_eq!(
            spread.values().filter(|agent| **agent == Some(2)).count(),
            3
        );
    }
}
