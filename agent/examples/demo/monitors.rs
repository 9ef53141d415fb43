//! Monitors and the local services they check, so every status shows up.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use cygnet_proto::v1 as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::api::{Api, poll};

/// Local services for the monitors: `/health` answers at once, `/slow` after 600 ms.
pub(crate) async fn serve_demo_services() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => request.extend_from_slice(&buffer[..read]),
                    }
                }
                if request.starts_with(b"GET /slow") {
                    tokio::time::sleep(Duration::from_millis(600)).await;
                }
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    Ok(address)
}

/// A port nobody listens on.
pub(crate) async fn closed_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    Ok(listener.local_addr()?)
}

/// A port that accepts connections and closes them: the "database" of the TCP monitor.
pub(crate) async fn open_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move { while listener.accept().await.is_ok() {} });
    Ok(address)
}

/// Monitors on the local demo services: healthy, warning (slow), down; one per status.
pub(crate) async fn seed_monitors(
    admin: &mut Api,
    customer_id: i64,
    which: &[(&str, pb::MonitorKind, String)],
) -> anyhow::Result<Vec<i64>> {
    let mut ids = Vec::new();
    for (name, kind, target) in which {
        let monitor = admin
            .monitors
            .create_monitor(pb::CreateMonitorRequest {
                customer_id,
                name: (*name).into(),
                kind: (*kind).into(),
                target: target.clone(),
                interval_seconds: 30,
                timeout_ms: 2000,
                warning_threshold_ms: 300,
                ..Default::default()
            })
            .await?
            .into_inner()
            .monitor
            .context("monitor")?;
        ids.push(monitor.id);
    }
    for monitor_id in &ids {
        let monitor_id = *monitor_id;
        poll(&format!("monitor {monitor_id} checked"), || {
            let mut api = admin.clone();
            async move {
                let monitor = api
                    .monitors
                    .get_monitor(pb::GetMonitorRequest {
                        customer_id,
                        monitor_id,
                    })
                    .await?
                    .into_inner()
                    .monitor
                    .context("monitor")?;
                Ok(monitor.last_checked_at.map(|_| ()))
            }
        })
        .await?;
    }
    Ok(ids)
}
