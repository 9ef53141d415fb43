//! What each role may do. `docs/permissions.md` is the human-readable copy of this table; keep
//! the two in step.

use super::{AuthError, TenantScope};
use crate::domain::release::Environment;
use crate::domain::{Refusal, Role};

/// Something a caller wants to do inside one customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read the customer record and its settings.
    ReadCustomer,
    /// Change the customer's profile and settings.
    UpdateCustomer,
    /// Deactivate or reactivate the customer (platform administrators only).
    ChangeCustomerStatus,
    /// List members and their users.
    ReadMembers,
    /// Invite members (platform administrators also add them directly) or change their roles.
    ManageMembers,
    /// List the customer's open invitations.
    ReadInvitations,
    /// Remove a member; allowed in a deactivated customer, since taking access away is always safe.
    RemoveMember,
    /// List and read agents, their metrics and registration tokens.
    ReadAgents,
    /// Create registration tokens and change agents.
    ManageAgents,
    /// Delete agents and revoke registration tokens; allowed in a deactivated customer.
    RetireAgents,
    /// Read the activity feed.
    ReadActivity,
    /// Read pipelines, executions, logs and artifacts.
    ReadPipelines,
    /// Create and change pipelines.
    ManagePipelines,
    /// Delete pipelines; allowed in a deactivated customer.
    DeletePipelines,
    /// Run (and retry) pipelines.
    RunPipelines,
    /// Cancel executions; allowed in a deactivated customer (stopping work is always safe).
    CancelExecutions,
    /// Read environments, releases and release executions.
    ReadReleases,
    /// Create and change environments and releases.
    ManageReleases,
    /// Deploy releases.
    DeployReleases,
    /// Let whoever deployed approve their own stages in an environment (`allow_self_approval`).
    ManageApprovalPolicy,
    /// Cancel release executions; allowed in a deactivated customer.
    CancelReleases,
    /// Approve a stage (the environment's approver roles decide who; starts work).
    ApproveStages,
    /// Reject a stage (the environment's approver roles decide who); allowed in a deactivated
    /// customer.
    RejectStages,
    /// Read monitors and their history.
    ReadMonitors,
    /// Create and change monitors.
    ManageMonitors,
    /// Delete monitors; allowed in a deactivated customer.
    DeleteMonitors,
    /// Read the audit log of the customer's writes.
    ReadAuditLog,
    /// Read the customer's usage (billing figures).
    ReadUsage,
    /// Read variable groups and non-secret values (secret values are never readable).
    ReadVariables,
    /// Create, rename and delete variable groups.
    ManageVariableGroups,
    /// Set, replace or delete a secret variable (its value is write-only for every role).
    ManageSecrets,
    /// Set and delete non-secret variables.
    SetVariables,
    /// Create and change webhooks (each holds a secret that starts runs).
    ManageWebhooks,
    /// Delete webhooks; allowed in a deactivated customer.
    DeleteWebhooks,
    /// Read webhooks' delivery logs; allowed in a deactivated customer.
    ReadWebhookDeliveries,
}

impl Action {
    /// Roles that may perform the action. Platform administrators may perform every action.
    pub fn allowed_roles(self) -> &'static [Role] {
        use Role::*;
        match self {
            Action::ReadCustomer
            | Action::ReadMembers
            | Action::ReadAgents
            | Action::ReadActivity
            | Action::ReadPipelines
            | Action::ReadReleases
            | Action::ReadMonitors
            | Action::ReadVariables
            // Every member may ask; the environment's approver roles decide
            // (`require_stage_approver`).
            | Action::ApproveStages
            | Action::RejectStages => &[Admin, Devops, Developer, Qa, Viewer],
            Action::ManageReleases => &[Admin, Devops],
            Action::DeployReleases | Action::CancelReleases => &[Admin, Devops, Developer],
            Action::ManageMonitors | Action::DeleteMonitors => &[Admin, Devops, Developer],
            Action::ReadAuditLog | Action::ReadUsage | Action::ManageApprovalPolicy => &[Admin],
            Action::ManageVariableGroups
            | Action::ManageSecrets
            | Action::ManageWebhooks
            | Action::DeleteWebhooks
            | Action::ReadWebhookDeliveries => &[Admin, Devops],
            Action::SetVariables => &[Admin, Devops, Developer],
            Action::ManagePipelines
            | Action::DeletePipelines
            | Action::RunPipelines
            | Action::CancelExecutions => &[Admin, Devops, Developer],
            Action::UpdateCustomer
            | Action::ManageMembers
            | Action::RemoveMember
            | Action::ReadInvitations => &[Admin],
            Action::ManageAgents | Action::RetireAgents => &[Admin, Devops],
            Action::ChangeCustomerStatus => &[],
        }
    }

    /// Whether the action creates or changes something, and so is refused (FAILED_PRECONDITION)
    /// while the customer is deactivated.
    pub fn needs_active_customer(self) -> bool {
        matches!(
            self,
            Action::UpdateCustomer
                | Action::ManageMembers
                | Action::ManageAgents
                | Action::ManagePipelines
                | Action::RunPipelines
                | Action::ManageReleases
                | Action::DeployReleases
                | Action::ManageApprovalPolicy
                | Action::ApproveStages
                | Action::ManageMonitors
                | Action::ManageVariableGroups
                | Action::ManageSecrets
                | Action::SetVariables
                | Action::ManageWebhooks
        )
    }

    /// A short description for PERMISSION_DENIED messages, e.g. "manage members of".
    pub fn describe(self) -> &'static str {
        match self {
            Action::ReadCustomer => "read",
            Action::UpdateCustomer => "update",
            Action::ChangeCustomerStatus => "deactivate or reactivate",
            Action::ReadMembers => "list members of",
            Action::ManageMembers => "manage members of",
            Action::RemoveMember => "remove members from",
            Action::ReadInvitations => "list the invitations of",
            Action::ReadAgents => "read agents of",
            Action::ManageAgents => "manage agents of",
            Action::RetireAgents => "delete agents or revoke registration tokens of",
            Action::ReadActivity => "read the activity of",
            Action::ReadPipelines => "read pipelines of",
            Action::ManagePipelines => "create or change pipelines of",
            Action::DeletePipelines => "delete pipelines of",
            Action::RunPipelines => "run pipelines of",
            Action::CancelExecutions => "cancel executions of",
            Action::ReadReleases => "read releases of",
            Action::ManageReleases => "create or change environments and releases of",
            Action::DeployReleases => "deploy releases of",
            Action::ManageApprovalPolicy => "allow self-approval in environments of",
            Action::CancelReleases => "cancel releases of",
            Action::ApproveStages => "approve stages of",
            Action::RejectStages => "reject stages of",
            Action::ReadMonitors => "read monitors of",
            Action::ManageMonitors => "create or change monitors of",
            Action::DeleteMonitors => "delete monitors of",
            Action::ReadAuditLog => "read the audit log of",
            Action::ReadUsage => "read the usage of",
            Action::ReadVariables => "read variables of",
            Action::ManageVariableGroups => "manage variable groups of",
            Action::ManageSecrets => "set or delete secret variables of",
            Action::SetVariables => "set variables of",
            Action::ManageWebhooks => "manage webhooks of",
            Action::DeleteWebhooks => "delete webhooks of",
            Action::ReadWebhookDeliveries => "read the webhook deliveries of",
        }
    }
}

/// Refuses an action the scope's role does not allow, for a request that already holds a scope
/// for another action (a developer setting variables may not touch a secret among them).
pub fn require(scope: &TenantScope, action: Action) -> Result<(), AuthError> {
    if scope.is_platform_admin() || action.allowed_roles().contains(&scope.role()) {
        return Ok(());
    }
    Err(AuthError::PermissionDenied(format!(
        "role {} may not {} customer {}",
        scope.role(),
        action.describe(),
        scope.customer_id()
    )))
}

/// Who may approve or reject a stage: a role among the approver roles of the stage's
/// environment (a customer setting per environment, so not in the table above).
pub fn require_stage_approver(role: Role, environment: &Environment) -> Result<(), Refusal> {
    if environment.approver_roles.contains(&role) {
        return Ok(());
    }
    let roles: Vec<&str> = environment
        .approver_roles
        .iter()
        .map(|role| role.as_str())
        .collect();
    Err(Refusal::NotPermitted(format!(
        "role {role} may not approve or reject stages in {} (approver roles: {})",
        environment.name,
        roles.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_admins_manage_members_and_nobody_but_platform_admins_changes_status() {
        assert_eq!(Action::ManageMembers.allowed_roles(), &[Role::Admin]);
        assert!(Action::ChangeCustomerStatus.allowed_roles().is_empty());
        for role in Role::ALL {
            assert!(Action::ReadCustomer.allowed_roles().contains(&role));
        }
    }
}
