//! The web dashboard's server-side render with 10,000 executions in the customer: the time from
//! request to the last byte of `GET /c/<customer>`, which runs the same reads as the page
//! (the customer, the caller, the six cards' figures, the last 20 activity events) and renders
//! the template.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use cygnet_proto::v1 as pb;
use cygnet_proto::v1::customer_service_client::CustomerServiceClient;
use cygnet_proto::v1::pipeline_service_client::PipelineServiceClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{ADMIN_TOKEN, BenchServer, Observed, admin, connect_agents, tenant};
use crate::scenarios::{Options, run_pipeline};
use crate::stats::{Figure, ms, quantile};

/// One HTTP/1.1 exchange on a new connection; the status and the whole answer.
async fn exchange(address: SocketAddr, request: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let answer = String::from_utf8(answer)?;
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .context("an HTTP status")?;
    Ok((status, answer))
}

/// Signs in as a browser does: the sign-in page (its pre-session cookie and form token), then
/// the form.
async fn sign_in(address: SocketAddr) -> anyhow::Result<String> {
    let (status, page) = exchange(
        address,
        "GET /signin HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n",
    )
    .await?;
    anyhow::ensure!(status == 200, "the sign-in page answered {status}");
    let pre_session = page
        .lines()
        .find_map(|line| line.strip_prefix("set-cookie: "))
        .and_then(|cookie| cookie.split(';').next())
        .context("a pre-session cookie")?;
    let marker = "name=\"signin_token\" value=\"";
    let signin_token = page
        .split_once(marker)
        .and_then(|(_, rest)| rest.split('"').next())
        .context("the sign-in form's token")?;
    let body = format!("token={ADMIN_TOKEN}&signin_token={signin_token}");
    let (status, answer) = exchange(
        address,
        &format!(
            "POST /signin HTTP/1.1\r\nhost: bench\r\nconnection: close\r\ncookie: {pre_session}\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await?;
    anyhow::ensure!(status == 303, "sign-in answered {status}");
    answer
        .lines()
        .filter_map(|line| line.strip_prefix("set-cookie: "))
        .find(|cookie| cookie.starts_with("cygnet_session="))
        .and_then(|cookie| cookie.split(';').next())
        .map(str::to_owned)
        .context("a session cookie")
}

pub async fn dashboard(options: &Options) -> anyhow::Result<Vec<Figure>> {
    let target = options.pick(10_000u64, 300);
    let renders = options.pick(200, 20);
    let server = BenchServer::start(options.database_url.as_deref()).await?;
    let channel = server.channel().await?;
    let tenant = Arc::new(tenant(&channel, "dashboard").await?);
    let (observed, _arrivals) = Observed::new();
    let fleet = connect_agents(server.address, &tenant, 100, observed).await?;

    // The executions, run to completion by agents that finish every job at once.
    let started = Instant::now();
    let submitted = Arc::new(AtomicU64::new(0));
    let mut submitters = Vec::new();
    for _ in 0..64 {
        let mut pipelines = PipelineServiceClient::with_interceptor(channel.clone(), admin());
        let (submitted, tenant) = (submitted.clone(), tenant.clone());
        submitters.push(tokio::spawn(async move {
            while submitted.fetch_add(1, Ordering::Relaxed) < target {
                run_pipeline(&mut pipelines, tenant.customer_id, tenant.pipeline_id).await?;
            }
            anyhow::Ok(())
        }));
    }
    for submitter in submitters {
        submitter.await??;
    }
    let mut customers = CustomerServiceClient::with_interceptor(channel.clone(), admin());
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let stats = customers
            .get_customer_stats(pb::GetCustomerStatsRequest {
                customer_id: tenant.customer_id,
            })
            .await?
            .into_inner()
            .stats
            .context("stats")?;
        if stats.executions_succeeded as u64 >= target {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {target} executions succeeded",
            stats.executions_succeeded
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seeded_in = started.elapsed();
    drop(fleet);

    let cookie = sign_in(server.web_address).await?;
    let request = format!(
        "GET /c/{} HTTP/1.1\r\nhost: bench\r\nconnection: close\r\ncookie: {cookie}\r\n\r\n",
        tenant.customer_id
    );
    let mut samples = Vec::with_capacity(renders);
    let mut size = 0;
    for round in 0..renders + 10 {
        let began = Instant::now();
        let (status, page) = exchange(server.web_address, &request).await?;
        let took = began.elapsed();
        anyhow::ensure!(status == 200, "the dashboard answered {status}");
        anyhow::ensure!(
            page.contains(&format!("<p class=\"total\">{target}</p>")),
            "the executions card does not show {target}"
        );
        size = page.len();
        // The first renders warm the connection pool and the caches; they are not counted.
        if round >= 10 {
            samples.push(took);
        }
    }
    samples.sort();
    let (p50, p99, max) = (
        quantile(&samples, 0.5),
        quantile(&samples, 0.99),
        samples.last().copied().unwrap_or_default(),
    );
    println!(
        "dashboard, {target} executions (seeded in {:.1} s): {renders} renders of {size} bytes, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        seeded_in.as_secs_f64(),
        ms(p50),
        ms(p99),
        ms(max)
    );
    server.stop().await?;
    let name = format!("dashboard render, {target} executions");
    Ok(vec![
        Figure::new(format!("{name}: p50"), ms(p50), "ms"),
        Figure::new(format!("{name}: p99"), ms(p99), "ms"),
        Figure::new(format!("{name}: max"), ms(max), "ms"),
    ])
}
