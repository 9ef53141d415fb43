//! What a dashboard user waits for, with 10,000 executions in the customer (run through agents)
//! and again with 1,000,000 (the rest seeded in bulk): the time from request to the last byte of
//! `GET /c/<customer>` (the customer, the caller, the six cards' figures, the last 20 activity
//! events, the template), and the `GetCustomerStats` and `ListPipelines` calls, with the ratio
//! of each median at the large size to the small one.

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
use crate::history;
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
    let mut figures = Vec::new();
    let small = measure(&server, &channel, &cookie, &tenant, target, renders).await?;
    report(
        &small,
        target,
        &format!("seeded in {:.1} s", seeded_in.as_secs_f64()),
    );
    figures.extend(small.figures(target));

    // Two years in: the same customer with a million executions, seeded in bulk.
    let history = options.pick(1_000_000u64, 20_000);
    let seeded = history.saturating_sub(target);
    let inserted_in = history::seed(
        &server.database_url,
        tenant.customer_id,
        tenant.pipeline_id,
        seeded,
    )
    .await?;
    let folded_in = history::folded(&server.database_url, Duration::from_secs(600)).await?;
    let large = measure(&server, &channel, &cookie, &tenant, history, renders).await?;
    report(
        &large,
        history,
        &format!(
            "{seeded} inserted in {:.1} s, their counts folded {:.1} s later",
            inserted_in.as_secs_f64(),
            folded_in.as_secs_f64()
        ),
    );
    figures.extend(large.figures(history));
    for (what, small, large) in [
        ("dashboard render", &small.render, &large.render),
        ("GetCustomerStats", &small.stats, &large.stats),
        ("ListPipelines", &small.list, &large.list),
    ] {
        let ratio = ms(quantile(large, 0.5)) / ms(quantile(small, 0.5)).max(f64::MIN_POSITIVE);
        figures.push(Figure::new(
            format!("{what}: p50 at {history} ÷ at {target} executions"),
            ratio,
            "×",
        ));
    }
    figures.push(Figure::new(
        format!("{seeded} executions' counts folded after their insert"),
        folded_in.as_secs_f64(),
        "s",
    ));
    server.stop().await?;
    Ok(figures)
}

/// Latencies of the three reads a dashboard user waits for, at one size of history.
struct Samples {
    render: Vec<Duration>,
    stats: Vec<Duration>,
    list: Vec<Duration>,
    page_bytes: usize,
}

impl Samples {
    fn figures(&self, executions: u64) -> Vec<Figure> {
        let mut figures = Vec::new();
        for (what, samples) in [
            ("dashboard render", &self.render),
            ("GetCustomerStats", &self.stats),
            ("ListPipelines", &self.list),
        ] {
            let name = format!("{what}, {executions} executions");
            figures.push(Figure::new(
                format!("{name}: p50"),
                ms(quantile(samples, 0.5)),
                "ms",
            ));
            figures.push(Figure::new(
                format!("{name}: p99"),
                ms(quantile(samples, 0.99)),
                "ms",
            ));
            figures.push(Figure::new(
                format!("{name}: max"),
                ms(samples.iter().max().copied().unwrap_or_default()),
                "ms",
            ));
        }
        figures
    }
}

fn report(samples: &Samples, executions: u64, note: &str) {
    for (what, taken) in [
        ("dashboard render", &samples.render),
        ("GetCustomerStats", &samples.stats),
        ("ListPipelines", &samples.list),
    ] {
        println!(
            "{what}, {executions} executions ({note}): {} calls, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms{}",
            taken.len(),
            ms(quantile(taken, 0.5)),
            ms(quantile(taken, 0.99)),
            ms(taken.iter().max().copied().unwrap_or_default()),
            if what == "dashboard render" {
                format!(", {} bytes", samples.page_bytes)
            } else {
                String::new()
            }
        );
    }
}

/// Up to `count` calls of `call` one after another (after 10 unmeasured warm-up calls), or as
/// many as fit in a minute when they are slow.
async fn sample<F, Fut>(count: usize, mut call: F) -> anyhow::Result<Vec<Duration>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    const BUDGET: Duration = Duration::from_secs(60);
    let mut samples = Vec::with_capacity(count);
    let began = Instant::now();
    for round in 0..count + 10 {
        let started = Instant::now();
        call().await?;
        // The first calls warm the connection pool and the caches; they are not counted.
        if round >= 10 {
            samples.push(started.elapsed());
            if began.elapsed() > BUDGET {
                break;
            }
        }
    }
    Ok(samples)
}

/// The three reads, each sampled by [`sample`]; each answer must show `executions`.
async fn measure(
    server: &BenchServer,
    channel: &tonic::transport::Channel,
    cookie: &str,
    tenant: &crate::harness::Tenant,
    executions: u64,
    count: usize,
) -> anyhow::Result<Samples> {
    let request = format!(
        "GET /c/{} HTTP/1.1\r\nhost: bench\r\nconnection: close\r\ncookie: {cookie}\r\n\r\n",
        tenant.customer_id
    );
    let page_bytes = std::cell::Cell::new(0);
    let render = sample(count, || {
        let (request, page_bytes) = (&request, &page_bytes);
        async move {
            let (status, page) = exchange(server.web_address, request).await?;
            anyhow::ensure!(status == 200, "the dashboard answered {status}");
            anyhow::ensure!(
                page.contains(&format!("<p class=\"total\">{executions}</p>")),
                "the executions card does not show {executions}"
            );
            page_bytes.set(page.len());
            Ok(())
        }
    })
    .await?;
    let customers = CustomerServiceClient::with_interceptor(channel.clone(), admin());
    let stats = sample(count, || {
        let mut customers = customers.clone();
        async move {
            let stats = customers
                .get_customer_stats(pb::GetCustomerStatsRequest {
                    customer_id: tenant.customer_id,
                })
                .await?
                .into_inner()
                .stats
                .context("stats")?;
            anyhow::ensure!(
                stats.executions_total as u64 == executions,
                "GetCustomerStats counts {} executions, not {executions}",
                stats.executions_total
            );
            Ok(())
        }
    })
    .await?;
    let pipelines = PipelineServiceClient::with_interceptor(channel.clone(), admin());
    let list = sample(count, || {
        let mut pipelines = pipelines.clone();
        async move {
            let listed = pipelines
                .list_pipelines(pb::ListPipelinesRequest {
                    customer_id: tenant.customer_id,
                    page_size: 50,
                    page_token: String::new(),
                })
                .await?
                .into_inner()
                .pipelines;
            let counted: i64 = listed
                .iter()
                .filter_map(|pipeline| pipeline.stats.as_ref())
                .map(|stats| stats.executions_total)
                .sum();
            anyhow::ensure!(
                counted as u64 == executions,
                "ListPipelines counts {counted} executions, not {executions}"
            );
            Ok(())
        }
    })
    .await?;
    Ok(Samples {
        render,
        stats,
        list,
        page_bytes: page_bytes.get(),
    })
}
