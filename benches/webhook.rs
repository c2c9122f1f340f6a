//! Webhook receiver throughput: racklift's real router (`racklift::http::router`, the same
//! layers `racklift serve` mounts) served in-process with `axum::serve` on 127.0.0.1, driven
//! with NetBox-signed `POST /hooks/netbox` deliveries over keep-alive connections.
//!
//! Run by hand, never by the test command: `cargo bench --bench webhook` (or `scripts/bench`).
//! Without cargo bench's `--bench` argument (e.g. under `cargo test --all-targets`) it only
//! says how to run it.
//!
//! The payload is the recorded NetBox 4.7 `dcim.device` "updated" event from
//! `tests/fixtures/`, with `data.id` cycling through a bounded range of ids and a timestamp
//! unique per request: the receiver de-duplicates deliveries by signature, so every request
//! must be signed over a different body to reach the queue. Nothing consumes the queue here;
//! repeated ids coalesce in it, so its capacity only has to hold the id range.
//!
//! Tuning, by environment: RACKLIFT_BENCH_REQUESTS (default 20000), RACKLIFT_BENCH_CONCURRENCY
//! (32), RACKLIFT_BENCH_IDS (1000). `RUST_LOG` filters racklift's logs as in `racklift serve`
//! (default `info`, which keeps the per-request debug events off, as in production).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::body::Bytes;
use racklift::config::Secret;
use racklift::controller::WorkQueue;
use racklift::http::{AppState, Limits, SIGNATURE_HEADER, router, sign};
use serde_json::Value;

const FIXTURE: &str =
    include_str!("../tests/fixtures/webhook-device-updated-racked-to-discovered.json");
/// `racklift serve`'s defaults (`webhook.path`, `webhook.body_limit_bytes`).
const WEBHOOK_PATH: &str = "/hooks/netbox";
const BODY_LIMIT: usize = 1024 * 1024;
/// No answer may take this long; a stuck request fails the run instead of hanging it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server may take to close once the client is gone.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
struct Settings {
    requests: usize,
    concurrency: usize,
    ids: usize,
    /// Unmeasured requests first, so connection set-up and first-touch allocations are not
    /// counted.
    warmup: usize,
}

impl Settings {
    fn from_env() -> anyhow::Result<Self> {
        let requests = env_number("RACKLIFT_BENCH_REQUESTS", 20_000)?;
        let concurrency = env_number("RACKLIFT_BENCH_CONCURRENCY", 32)?;
        let ids = env_number("RACKLIFT_BENCH_IDS", 1_000)?;
        if requests == 0 || concurrency == 0 || ids == 0 {
            bail!("RACKLIFT_BENCH_REQUESTS, _CONCURRENCY and _IDS must be at least 1");
        }
        Ok(Self {
            requests,
            concurrency,
            ids,
            warmup: (requests / 20).max(concurrency),
        })
    }
}

fn env_number(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .with_context(|| format!("{name}={text:?} is not a number")),
        Err(_) => Ok(default),
    }
}

/// One delivery, built before the clock starts so the client's HMAC work does not compete
/// with the server for the CPU during the measured run.
#[derive(Debug, Clone)]
struct Delivery {
    body: Bytes,
    signature: String,
}

/// The fixture's body cut around its timestamp and `data.id`, so each delivery is NetBox's
/// bytes verbatim (its `json.dumps` spacing included) but for those two values.
#[derive(Debug)]
struct Template {
    before_timestamp: String,
    before_id: String,
    after_id: String,
    timestamp: chrono::DateTime<chrono::Utc>,
}

impl Template {
    fn from_fixture() -> anyhow::Result<Self> {
        let fixture: Value = serde_json::from_str(FIXTURE).context("the fixture is not JSON")?;
        let body = fixture["body"]
            .as_str()
            .context("the fixture has no \"body\" string")?;
        let value_at = |key: &str| -> anyhow::Result<usize> {
            match body
                .match_indices(key)
                .map(|(at, _)| at)
                .collect::<Vec<_>>()[..]
            {
                [at] => Ok(at + key.len()),
                _ => bail!("the fixture's body does not hold {key:?} exactly once"),
            }
        };
        let timestamp_at = value_at("\"timestamp\": \"")?;
        let timestamp_end = timestamp_at
            + body[timestamp_at..]
                .find('"')
                .context("unterminated timestamp")?;
        let id_at = value_at("\"data\": {\"id\": ")?;
        let id_end = id_at
            + body[id_at..]
                .find(|c: char| !c.is_ascii_digit())
                .context("unterminated id")?;
        if timestamp_end > id_at {
            bail!("the fixture's body has data.id before its timestamp");
        }
        Ok(Self {
            before_timestamp: body[..timestamp_at].to_owned(),
            before_id: body[timestamp_end..id_at].to_owned(),
            after_id: body[id_end..].to_owned(),
            timestamp: body[timestamp_at..timestamp_end]
                .parse()
                .context("the fixture's timestamp is not RFC 3339")?,
        })
    }

    /// The event for device `id`, `micros` after the recorded one.
    fn body(&self, id: u64, micros: i64) -> String {
        let timestamp = (self.timestamp + chrono::Duration::microseconds(micros))
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, false);
        format!(
            "{}{timestamp}{}{id}{}",
            self.before_timestamp, self.before_id, self.after_id
        )
    }
}

/// Deliveries number `range`: device ids cycle through 1..=ids, timestamps differ by 1 µs.
fn deliveries(
    template: &Template,
    secret: &Secret,
    ids: usize,
    range: std::ops::Range<usize>,
) -> anyhow::Result<Vec<Delivery>> {
    range
        .map(|n| {
            let body = template.body(u64::try_from(n % ids + 1)?, i64::try_from(n)?);
            Ok(Delivery {
                signature: sign(secret, body.as_bytes()),
                body: body.into(),
            })
        })
        .collect()
}

/// Checks that a built body is still the event the receiver reads.
fn check(delivery: &Delivery, id: u64) -> anyhow::Result<()> {
    let event: Value =
        serde_json::from_slice(&delivery.body).context("a built body is not JSON")?;
    if event["object_type"] != "dcim.device" || event["data"]["id"] != id {
        bail!("a built body is not a dcim.device event for device {id}");
    }
    Ok(())
}

/// What the client saw.
#[derive(Debug, Default)]
struct Tally {
    /// Microseconds from sending to the whole answer read, per request.
    latencies: Vec<u64>,
    /// Answers other than 202, and requests that got no answer.
    not_accepted: usize,
    /// 202s that said "duplicate delivery": the de-dup cache answered, not the queue.
    duplicates: usize,
    /// The first few failures, to show.
    samples: Vec<String>,
}

impl Tally {
    fn merge(&mut self, other: Self) {
        self.latencies.extend(other.latencies);
        self.not_accepted += other.not_accepted;
        self.duplicates += other.duplicates;
        self.samples.extend(other.samples);
        self.samples.truncate(5);
    }
}

/// Sends every delivery with `concurrency` requests in flight, each worker taking the next one
/// as soon as its previous answer is read.
async fn drive(
    client: &reqwest::Client,
    url: &str,
    deliveries: Vec<Delivery>,
    concurrency: usize,
) -> anyhow::Result<Tally> {
    let deliveries: Arc<[Delivery]> = deliveries.into();
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, url) = (client.clone(), url.to_owned());
        let (deliveries, next) = (deliveries.clone(), next.clone());
        workers.spawn(async move {
            let mut tally = Tally::default();
            while let Some(delivery) = deliveries.get(next.fetch_add(1, Ordering::Relaxed)) {
                let started = Instant::now();
                let answer = async {
                    let response = client
                        .post(&url)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .header(SIGNATURE_HEADER, &delivery.signature)
                        .body(delivery.body.clone())
                        .send()
                        .await?;
                    let status = response.status();
                    Ok::<_, reqwest::Error>((status, response.bytes().await?))
                }
                .await;
                let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                tally.latencies.push(micros);
                match answer {
                    Ok((status, body)) if status == reqwest::StatusCode::ACCEPTED => {
                        if !contains(&body, b"\"queued\"") {
                            tally.duplicates += 1;
                        }
                    }
                    Ok((status, body)) => {
                        tally.not_accepted += 1;
                        if tally.samples.len() < 5 {
                            let body = String::from_utf8_lossy(&body);
                            tally.samples.push(format!("HTTP {status}: {body}"));
                        }
                    }
                    Err(e) => {
                        tally.not_accepted += 1;
                        if tally.samples.len() < 5 {
                            tally.samples.push(format!("no answer: {e}"));
                        }
                    }
                }
            }
            tally
        });
    }
    let mut total = Tally::default();
    while let Some(worker) = workers.join_next().await {
        total.merge(worker.context("a client worker panicked")?);
    }
    Ok(total)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() -> anyhow::Result<ExitCode> {
    // `cargo bench` passes --bench to every bench target; `cargo test --all-targets` runs
    // this binary without it, and must not start a benchmark.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("webhook bench: skipped; run it with `cargo bench --bench webhook`");
        return Ok(ExitCode::SUCCESS);
    }
    let settings = Settings::from_env()?;
    racklift::cli::init_logging();

    let secret = Secret::new("racklift-bench-webhook-secret");
    let template = Template::from_fixture()?;
    let warmup = deliveries(&template, &secret, settings.ids, 0..settings.warmup)?;
    let measured = deliveries(
        &template,
        &secret,
        settings.ids,
        settings.warmup..settings.warmup + settings.requests,
    )?;
    check(warmup.first().context("no warm-up deliveries")?, 1)?;
    let sizes = measured.iter().map(|d| d.body.len());
    let (smallest, largest) = (sizes.clone().min().unwrap_or(0), sizes.max().unwrap_or(0));

    // The server gets a runtime of its own, as if it were a separate `racklift serve`
    // process, so its tasks do not queue behind the client's; both share the machine's CPUs.
    let server_runtime = tokio::runtime::Runtime::new().context("server runtime")?;
    let queue = Arc::new(WorkQueue::new(settings.ids));
    let app = router(
        AppState::new(queue.clone(), secret, None, Default::default()),
        &Limits {
            webhook_path: WEBHOOK_PATH.to_owned(),
            webhook_body: BODY_LIMIT,
            report_body: BODY_LIMIT,
        },
    );
    let listener = server_runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .context("cannot listen on 127.0.0.1")?;
    let url = format!("http://{}{WEBHOOK_PATH}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = server_runtime.spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });

    let client_runtime = tokio::runtime::Runtime::new().context("client runtime")?;
    let (tally, elapsed) = client_runtime.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(settings.concurrency)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("HTTP client")?;
        let warm = drive(&client, &url, warmup, settings.concurrency).await?;
        if warm.not_accepted > 0 {
            bail!("the warm-up was refused: {:?}", warm.samples);
        }
        let started = Instant::now();
        let tally = drive(&client, &url, measured, settings.concurrency).await?;
        Ok((tally, started.elapsed()))
    })?;
    // The client and its keep-alive connections are gone: graceful shutdown can finish.
    drop(client_runtime);
    let _ = stop.send(());
    server_runtime
        .block_on(async { tokio::time::timeout(SHUTDOWN_TIMEOUT, server).await })
        .context("the server did not stop")?
        .context("the server task panicked")?
        .context("the server failed")?;

    let mut latencies = tally.latencies;
    latencies.sort_unstable();
    let rate = latencies.len() as f64 / elapsed.as_secs_f64();
    let waiting = queue.stats().waiting;
    println!("webhook receiver: racklift's router in-process, 127.0.0.1, HTTP/1.1 keep-alive");
    println!(
        "payload        {smallest}-{largest} bytes (tests/fixtures/webhook-device-updated-racked-to-discovered.json), device ids 1..={}",
        settings.ids
    );
    println!("cpus           {}", std::thread::available_parallelism()?);
    println!("requests       {}", latencies.len());
    println!("warm-up        {} (not measured)", settings.warmup);
    println!("concurrency    {}", settings.concurrency);
    println!("elapsed        {:.3} s", elapsed.as_secs_f64());
    println!("requests/s     {rate:.0}");
    println!(
        "latency µs     p50 {}  p99 {}  max {}",
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(0)
    );
    println!("non-202        {}", tally.not_accepted);
    println!(
        "duplicates     {} (202 from the de-dup cache)",
        tally.duplicates
    );
    println!("queue after    {waiting} devices waiting (every id, coalesced)");
    for sample in &tally.samples {
        println!("  e.g. {sample}");
    }

    let all_queued = waiting == settings.ids.min(settings.warmup + settings.requests);
    Ok(
        if tally.not_accepted == 0 && tally.duplicates == 0 && all_queued {
            ExitCode::SUCCESS
        } else {
            eprintln!("webhook bench: FAILED (see non-202 / duplicates / queue above)");
            ExitCode::FAILURE
        },
    )
}
