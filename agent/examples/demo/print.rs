//! What the demo prints and writes: every customer's dashboard figures and the users' tokens.

use std::path::{Path, PathBuf};

use anyhow::Context;
use cygnet_proto::v1 as pb;

use crate::api::Api;
use crate::seed::Seeded;

pub(crate) async fn print_dashboard(admin: &mut Api, seeded: &Seeded) -> anyhow::Result<()> {
    let customer = &seeded.customer;
    let stats = admin
        .customers
        .get_customer_stats(pb::GetCustomerStatsRequest {
            customer_id: customer.id,
        })
        .await?
        .into_inner()
        .stats
        .context("stats")?;
    println!();
    println!("{} (customer {})", customer.display_name, customer.id);
    println!(
        "  agents     {:>4}  {} online      pipelines {:>4}  {} succeeding   releases   {:>4}  {} active, {} deploying",
        stats.agents_total,
        stats.agents_online,
        stats.pipelines_total,
        stats.pipelines_succeeding,
        stats.releases_total,
        stats.releases_active,
        stats.releases_in_progress
    );
    println!(
        "  services   {:>4}  {} warning     users     {:>4}  {} active       executions {:>4}  {:.0}% success",
        stats.services_total,
        stats.services_warning,
        stats.users_total,
        stats.users_active,
        stats.executions_total,
        stats.success_rate_percent
    );
    let events = admin
        .customers
        .list_activity(pb::ListActivityRequest {
            customer_id: customer.id,
            page_size: 5,
            ..Default::default()
        })
        .await?
        .into_inner()
        .events;
    println!("  recent activity:");
    for event in events {
        println!("    {}", event.message);
    }
    Ok(())
}

/// Writes every user's token to `tokens.txt` in the data directory (readable by its owner only).
pub(crate) fn write_tokens(
    data_dir: &Path,
    admin_token: &str,
    consultant_token: &str,
    seeded: &[Seeded],
) -> anyhow::Result<PathBuf> {
    let mut lines = vec![
        format!("admin (platform administrator)\t{admin_token}"),
        format!("consultant (developer at every customer)\t{consultant_token}"),
    ];
    for customer in seeded {
        for (username, role, secret) in &customer.tokens {
            let role = role
                .as_str_name()
                .trim_start_matches("ROLE_")
                .to_lowercase();
            lines.push(format!(
                "{username} ({role} at {})\t{secret}",
                customer.customer.name
            ));
        }
    }
    let tokens_file = data_dir.join("tokens.txt");
    std::fs::write(&tokens_file, lines.join("\n") + "\n")?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tokens_file, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(tokens_file)
}
