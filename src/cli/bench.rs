//! `h3fleet bench`: a fleet of replica processes against many local
//! origins behind a latency relay, run twice (shared cache, then local-only
//! caches), to show what sharing tickets saves: full handshakes, and the
//! round trips of the first request to a host. The origins run HTTP/3 on
//! h3fleet's BoringSSL server, whose tickets many replicas can resume, or
//! (`--origin rustls`) on quinn's rustls server, which accepts each 0-RTT
//! ticket once: there `--ticket-reuse single-use` gives every connection a
//! ticket of its own, and the bench runs the shared-ticket policy too, for
//! comparison.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use clap::Args;
use h3fleet::cache::backend_from_uri;
use h3fleet::server::{LatencyRelay, TcpLatencyRelay};
use h3fleet::{HttpProtocol, Session};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufReadExt;

use super::serve::{self, Listeners, Started};
use super::CliError;

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Replica processes in the fleet.
    #[arg(long, default_value_t = 6)]
    replicas: usize,
    /// Origins (distinct names and ports).
    #[arg(long, default_value_t = 12)]
    hosts: usize,
    /// Requests each replica sends to each host (the first opens the
    /// connection, the others reuse it).
    #[arg(long, default_value_t = 3)]
    requests_per_host: usize,
    /// Round-trip time the relay adds between replicas and origins, in ms.
    #[arg(long, default_value_t = 20)]
    rtt_ms: u64,
    /// The shared backend (default: a fresh SQLite file).
    #[arg(long, value_name = "URI", env = "H3FLEET_CACHE", hide_env_values = true)]
    cache: Option<String>,
    /// Seal the shared cache's values with the keys in FILE.
    #[arg(long, value_name = "FILE", env = "H3FLEET_CACHE_KEYS_FILE")]
    cache_keys: Option<PathBuf>,
    /// The protocol the replicas speak.
    #[arg(long, default_value = "h3", value_parser = ["h3", "h2", "h1"])]
    protocol: String,
    /// Write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Draw the first-request latency distributions of both runs (SVG).
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// The origins' HTTP/3 server: `boringssl` (h3fleet's, stateless
    /// tickets any number of replicas can resume) or `rustls` (quinn's,
    /// which takes each 0-RTT ticket once). h2 and h1 are served by
    /// BoringSSL only.
    #[arg(long, default_value = "boringssl", value_parser = ["boringssl", "rustls"])]
    origin: String,
    /// `shared` or `single-use` tickets for the fleet run; with
    /// `single-use`, a run with `shared` tickets is added for comparison.
    #[arg(long, default_value = "shared", value_parser = ["shared", "single-use"])]
    ticket_reuse: String,
    /// Every replica goes out through this proxy, in both runs (`socks5://`
    /// for HTTP/3: the origins' names are known here only, so the proxy
    /// cannot resolve them). Read from the environment, too, so a password
    /// never shows in argv.
    #[arg(long, value_name = "URL", env = "H3FLEET_PROXY", hide_env_values = true)]
    proxy: Option<String>,
}

/// One replica of a bench run (started by `h3fleet bench`, not by hand).
#[derive(Debug, Args)]
pub(crate) struct ReplicaArgs {
    /// `NAME:PORT` of each origin (through the relay, on 127.0.0.1).
    #[arg(long = "target", required = true)]
    targets: Vec<String>,
    /// The backend, or `none` for a local-only cache (from the environment,
    /// so a password never shows in argv).
    #[arg(long, env = "H3FLEET_CACHE", hide_env_values = true)]
    cache: String,
    /// The key file sealing the shared cache.
    #[arg(long, value_name = "FILE")]
    cache_keys: Option<PathBuf>,
    /// The origins' certificates (PEM bundle).
    #[arg(long)]
    cacert: PathBuf,
    #[arg(long, value_parser = ["h3", "h2", "h1"])]
    protocol: String,
    #[arg(long)]
    requests_per_host: usize,
    /// Seeds this replica's order of visits.
    #[arg(long)]
    seed: u64,
    /// `shared` or `single-use`.
    #[arg(long, default_value = "shared")]
    ticket_reuse: String,
    /// The egress proxy (from the environment only).
    #[arg(long, env = "H3FLEET_PROXY", hide_env_values = true)]
    proxy: Option<String>,
}

/// What a replica saw at one host; one JSON line each.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Visit {
    host: String,
    first_ms: f64,
    resumed: bool,
    early_data: String,
    ticket_source: String,
    later_ms: Vec<f64>,
    failed: usize,
}

/// Latency percentiles in ms.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default)]
struct Percentiles {
    p50: f64,
    p90: f64,
    p99: f64,
}

/// The outcome of one fleet run (the JSON `RUN`).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
struct RunReport {
    full_handshakes: usize,
    resumed: usize,
    zero_rtt_attempted: usize,
    zero_rtt_accepted: usize,
    /// Accepted / attempted 0-RTT (0 when none was attempted).
    zero_rtt_acceptance: f64,
    first_contact_resumption_rate: f64,
    first_request_ms: Percentiles,
    later_request_ms: Percentiles,
    failed_requests: usize,
    #[serde(skip)]
    first_samples: Vec<f64>,
}

/// Nearest-rank percentile of sorted `samples`.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn percentiles(mut samples: Vec<f64>) -> (Percentiles, Vec<f64>) {
    samples.sort_by(f64::total_cmp);
    let p = Percentiles {
        p50: percentile(&samples, 50.0),
        p90: percentile(&samples, 90.0),
        p99: percentile(&samples, 99.0),
    };
    (p, samples)
}

impl RunReport {
    fn from_visits(visits: &[Visit], replica_failures: usize) -> Self {
        let contacts = visits.len();
        let resumed = visits.iter().filter(|v| v.resumed).count();
        let (first_request_ms, first_samples) = percentiles(visits.iter().map(|v| v.first_ms).collect());
        let (later_request_ms, _) =
            percentiles(visits.iter().flat_map(|v| v.later_ms.iter().copied()).collect());
        let zero_rtt_attempted = visits.iter().filter(|v| v.early_data != "not_attempted").count();
        let zero_rtt_accepted = visits.iter().filter(|v| v.early_data == "accepted").count();
        Self {
            full_handshakes: contacts - resumed,
            resumed,
            zero_rtt_attempted,
            zero_rtt_accepted,
            zero_rtt_acceptance: ratio(zero_rtt_accepted as f64, zero_rtt_attempted as f64),
            first_contact_resumption_rate: if contacts == 0 {
                0.0
            } else {
                resumed as f64 / contacts as f64
            },
            first_request_ms,
            later_request_ms,
            failed_requests: visits.iter().map(|v| v.failed).sum::<usize>() + replica_failures,
            first_samples,
        }
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        a / b
    }
}

/// The origins and the relays in front of them.
struct Fleet {
    _origins: Vec<Started>,
    _udp: Vec<LatencyRelay>,
    _tcp: Vec<TcpLatencyRelay>,
    targets: Vec<String>,
    cacert: PathBuf,
}

async fn start_fleet(args: &BenchArgs, dir: &Path) -> Result<Fleet, CliError> {
    let rtt = Duration::from_millis(args.rtt_ms);
    let (mut origins, mut udp, mut tcp, mut targets) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut bundle = Vec::new();
    for i in 0..args.hosts {
        let name = format!("host{i}.bench.test");
        let cert = dir.join(format!("{name}.pem"));
        let started = serve::start(
            ([127, 0, 0, 1], 0).into(),
            std::slice::from_ref(&name),
            Some(&cert),
            // BoringSSL's stateless tickets can be resumed by many replicas,
            // as most production servers' can; rustls's 0-RTT tickets are
            // single-use, so replicas sharing one would mostly collide.
            &Listeners {
                boring_quic: args.origin == "boringssl",
                ..Listeners::both()
            },
        )?;
        bundle.extend_from_slice(&std::fs::read(&started.cert)?);
        let port = if args.protocol == "h3" {
            let relay = LatencyRelay::start(started.addr, rtt).await?;
            let port = relay.addr().port();
            udp.push(relay);
            port
        } else {
            let relay = TcpLatencyRelay::start(([127, 0, 0, 1], 0).into(), started.addr, rtt).await?;
            let port = relay.addr().port();
            tcp.push(relay);
            port
        };
        targets.push(format!("{name}:{port}"));
        origins.push(started);
    }
    let cacert = dir.join("origins.pem");
    std::fs::write(&cacert, bundle)?;
    Ok(Fleet {
        _origins: origins,
        _udp: udp,
        _tcp: tcp,
        targets,
        cacert,
    })
}

/// Runs the fleet once: every replica process at the same time, each
/// visiting every host in its own order.
async fn run_fleet(
    args: &BenchArgs,
    fleet: &Fleet,
    run: &Run,
    progress: &indicatif::ProgressBar,
) -> Result<RunReport, CliError> {
    progress.set_message(run.label);
    let mut children = spawn_replicas(args, fleet, run)?;
    let mut readers = Vec::new();
    for child in &mut children {
        let stdout = child.stdout.take().ok_or("a replica has no stdout")?;
        let progress = progress.clone();
        readers.push(tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            let mut visits = Vec::new();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(visit) = serde_json::from_str::<Visit>(&line) {
                    progress.inc(1);
                    visits.push(visit);
                }
            }
            visits
        }));
    }
    let mut visits = Vec::new();
    for reader in readers {
        visits.extend(reader.await?);
    }
    let replica_failures = wait_replicas(children).await?;
    Ok(RunReport::from_visits(&visits, replica_failures))
}

/// Starts the replica processes of one run.
fn spawn_replicas(
    args: &BenchArgs,
    fleet: &Fleet,
    run: &Run,
) -> Result<Vec<tokio::process::Child>, CliError> {
    let (cache, seed_base) = (run.cache.as_str(), run.seed);
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for r in 0..args.replicas {
        let mut command = tokio::process::Command::new(&exe);
        command
            .arg("bench-replica")
            .env("H3FLEET_CACHE", cache)
            .args(["--protocol", &args.protocol])
            .arg("--cacert")
            .arg(&fleet.cacert)
            .args(["--requests-per-host", &args.requests_per_host.to_string()])
            .args(["--seed", &(seed_base + r as u64).to_string()])
            .args(["--ticket-reuse", run.reuse]);
        if let Some(proxy) = &args.proxy {
            command.env("H3FLEET_PROXY", proxy);
        }
        for target in &fleet.targets {
            command.args(["--target", target]);
        }
        if let Some(keys) = args.cache_keys.as_ref().filter(|_| cache != "none") {
            command.arg("--cache-keys").arg(keys);
        }
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        children.push(command.spawn()?);
    }
    Ok(children)
}

/// Waits for every replica; the number that failed.
async fn wait_replicas(children: Vec<tokio::process::Child>) -> Result<usize, CliError> {
    let mut failures = 0;
    for child in children {
        let out = child.wait_with_output().await?;
        if !out.status.success() {
            failures += 1;
            eprintln!(
                "a replica failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(failures)
}

/// One run of the fleet: its column label, backend and ticket policy.
struct Run {
    label: &'static str,
    cache: String,
    reuse: &'static str,
    seed: u64,
}

/// The runs of one invocation: the fleet cache with the chosen policy,
/// with `single-use` the same cache with shared tickets, and local-only.
fn planned_runs(args: &BenchArgs, shared_cache: &str) -> Vec<Run> {
    let single = args.ticket_reuse == "single-use";
    let reuse = if single { "single-use" } else { "shared" };
    let mut runs = vec![Run {
        label: if single { "single-use" } else { "shared" },
        cache: shared_cache.to_owned(),
        reuse,
        seed: 1,
    }];
    if single {
        runs.push(Run {
            label: "shared",
            cache: shared_cache.to_owned(),
            reuse: "shared",
            seed: 2001,
        });
    }
    runs.push(Run {
        label: "local-only",
        cache: "none".to_owned(),
        reuse,
        seed: 1001,
    });
    runs
}

fn check_args(args: &BenchArgs) -> Result<(), CliError> {
    if args.replicas == 0 || args.hosts == 0 || args.requests_per_host == 0 {
        return Err("--replicas, --hosts and --requests-per-host must be at least 1".into());
    }
    if args.origin == "rustls" && args.protocol != "h3" {
        return Err("--origin rustls serves HTTP/3 only: the bench's h2 and h1 origins are BoringSSL".into());
    }
    Ok(())
}

pub(crate) async fn run(args: BenchArgs) -> Result<(), CliError> {
    check_args(&args)?;
    let dir = tempfile::tempdir()?;
    let shared_cache = args
        .cache
        .clone()
        .unwrap_or_else(|| format!("sqlite:{}", dir.path().join("bench.db").display()));
    // Check the backend and the keys before starting anything.
    drop(backend_from_uri(&shared_cache)?);
    drop(super::cache_keys(args.cache_keys.as_deref())?);
    let fleet = start_fleet(&args, dir.path()).await?;
    let runs = planned_runs(&args, &shared_cache);
    let contacts = args
        .replicas
        .saturating_mul(args.hosts)
        .saturating_mul(runs.len());
    let progress = indicatif::ProgressBar::new(u64::try_from(contacts).unwrap_or(u64::MAX));
    progress.set_style(
        indicatif::ProgressStyle::with_template("{msg:12} [{bar:40}] {pos}/{len} first contacts")
            .map_err(|e| e.to_string())?
            .progress_chars("=> "),
    );
    let mut reports = Vec::new();
    for run in &runs {
        reports.push((run.label, run_fleet(&args, &fleet, run, &progress).await?));
    }
    progress.finish_and_clear();
    report(&args, &shared_cache, &reports)
}

/// Prints the table and writes the JSON and the plot, if asked for.
fn report(args: &BenchArgs, shared_cache: &str, reports: &[(&str, RunReport)]) -> Result<(), CliError> {
    let (Some((_, shared)), Some((_, local))) = (reports.first(), reports.last()) else {
        return Err("the bench ran nothing".into());
    };
    let config = serde_json::json!({
        "replicas": args.replicas,
        "hosts": args.hosts,
        "requests_per_host": args.requests_per_host,
        "rtt_ms": args.rtt_ms,
        "cache": h3fleet::cache::redact_uri(shared_cache),
        "sealed": args.cache_keys.is_some(),
        "protocol": args.protocol,
        "origin": args.origin,
        "ticket_reuse": args.ticket_reuse,
    });
    let ratios = serde_json::json!({
        "full_handshakes": ratio(shared.full_handshakes as f64, local.full_handshakes as f64),
        "first_request_p50": ratio(shared.first_request_ms.p50, local.first_request_ms.p50),
        "first_request_p99": ratio(shared.first_request_ms.p99, local.first_request_ms.p99),
    });
    print_table(args, reports, &ratios);
    if let Some(path) = &args.json {
        let mut report = serde_json::json!({
            "config": config,
            "shared": shared,
            "local_only": local,
            "ratio": ratios,
        });
        if let (Some((_, with_shared_tickets)), true) = (reports.get(1), reports.len() == 3) {
            report["shared_tickets"] = serde_json::to_value(with_shared_tickets)?;
        }
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        let svg = super::bench_plot::plot_svg(&shared.first_samples, &local.first_samples, args.rtt_ms);
        std::fs::write(path, svg).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn print_table(args: &BenchArgs, reports: &[(&str, RunReport)], ratios: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "h3fleet bench: {} replicas x {} hosts x {} requests, {} ms RTT, {}, {} origin",
        args.replicas, args.hosts, args.requests_per_host, args.rtt_ms, args.protocol, args.origin
    );
    let mut head = format!("{:<34}", "");
    for (label, _) in reports {
        head.push_str(&format!(" {label:>12}"));
    }
    let _ = writeln!(out, "{head}");
    for (name, cell) in table_rows() {
        let mut line = format!("{name:<34}");
        for (_, report) in reports {
            line.push_str(&format!(" {:>12}", cell(report)));
        }
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(
        out,
        "{} / local-only: full handshakes {:.2}x, first request p50 {:.2}x, p99 {:.2}x",
        reports.first().map_or("shared", |(l, _)| l),
        ratios["full_handshakes"].as_f64().unwrap_or_default(),
        ratios["first_request_p50"].as_f64().unwrap_or_default(),
        ratios["first_request_p99"].as_f64().unwrap_or_default(),
    );
}

/// A row of the table: its name and how one run's cell reads.
type Row = (&'static str, fn(&RunReport) -> String);

fn table_rows() -> [Row; 10] {
    [
        ("full handshakes", |r| r.full_handshakes.to_string()),
        ("resumed handshakes", |r| r.resumed.to_string()),
        ("0-RTT attempted / accepted", |r| {
            format!("{}/{}", r.zero_rtt_attempted, r.zero_rtt_accepted)
        }),
        ("0-RTT acceptance", |r| {
            format!("{:.1} %", 100.0 * r.zero_rtt_acceptance)
        }),
        ("first-contact resumption rate", |r| {
            format!("{:.0} %", 100.0 * r.first_contact_resumption_rate)
        }),
        ("first request p50 (ms)", |r| {
            format!("{:.1}", r.first_request_ms.p50)
        }),
        ("first request p90 (ms)", |r| {
            format!("{:.1}", r.first_request_ms.p90)
        }),
        ("first request p99 (ms)", |r| {
            format!("{:.1}", r.first_request_ms.p99)
        }),
        ("later requests p50 / p99 (ms)", |r| {
            format!("{:.1}/{:.1}", r.later_request_ms.p50, r.later_request_ms.p99)
        }),
        ("failed requests", |r| r.failed_requests.to_string()),
    ]
}

/// A small seeded generator for the order of visits (xorshift64*).
struct Order(u64);

impl Order {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Shuffles `items` (Fisher-Yates).
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

/// One replica: visits every target in its own order, sending the requests
/// of each, and prints one [`Visit`] line per host.
pub(crate) async fn replica(args: ReplicaArgs) -> Result<(), CliError> {
    let (session, mut targets) = replica_session(&args)?;
    Order(args.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1).shuffle(&mut targets);
    let mut out = std::io::stdout().lock();
    for (name, port) in targets {
        let visit = visit(&session, name, port, args.requests_per_host).await;
        writeln!(out, "{}", serde_json::to_string(&visit)?)?;
        out.flush()?;
    }
    drop(out);
    session.close().await;
    Ok(())
}

/// The session of one replica and the hosts it visits.
fn replica_session(args: &ReplicaArgs) -> Result<(Session, Vec<(String, u16)>), CliError> {
    let mut builder = Session::builder()
        .system_roots(false)
        .protocol(match args.protocol.as_str() {
            "h2" => HttpProtocol::Http2,
            "h1" => HttpProtocol::Http1,
            _ => HttpProtocol::Http3,
        });
    let pem = std::fs::read(&args.cacert).map_err(|e| format!("{}: {e}", args.cacert.display()))?;
    builder = builder.add_root_certificate_pem(pem);
    builder = builder.ticket_reuse(
        args.ticket_reuse
            .parse()
            .map_err(|e| format!("--ticket-reuse: {e}"))?,
    );
    if let Some(proxy) = &args.proxy {
        builder = builder.proxy(h3fleet::Proxy::all(proxy)?);
    }
    if args.cache != "none" {
        builder = builder.session_cache(backend_from_uri(&args.cache)?, None);
        if let Some(keys) = super::cache_keys(args.cache_keys.as_deref())? {
            builder = builder.cache_keys(keys);
        }
    }
    let mut targets = Vec::new();
    for target in &args.targets {
        let (name, port) = target
            .rsplit_once(':')
            .and_then(|(n, p)| Some((n.to_owned(), p.parse::<u16>().ok()?)))
            .ok_or_else(|| format!("--target {target:?}: expected NAME:PORT"))?;
        builder = builder.resolve(&name, port, &["127.0.0.1".parse()?]);
        targets.push((name, port));
    }
    Ok((builder.build()?, targets))
}

/// Sends `requests` requests to one host and reports how they went.
async fn visit(session: &Session, name: String, port: u16, requests: usize) -> Visit {
    let url = format!("https://{name}:{port}/bench");
    let mut visit = Visit {
        host: name,
        first_ms: 0.0,
        resumed: false,
        early_data: "not_attempted".to_owned(),
        ticket_source: "none".to_owned(),
        later_ms: Vec::new(),
        failed: 0,
    };
    for i in 0..requests {
        let started = Instant::now();
        let result = async {
            let response = session.get(&url).send().await?;
            let tls = response.tls().clone();
            let ok = response.status().is_success();
            response.bytes().await?;
            Ok::<_, h3fleet::Error>((tls, ok))
        }
        .await;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        match result {
            Ok((tls, true)) if i == 0 => {
                visit.first_ms = ms;
                visit.resumed = tls.resumed;
                visit.early_data = tls.early_data.as_str().to_owned();
                visit.ticket_source = tls.ticket_source_str().to_owned();
            }
            Ok((_, true)) => visit.later_ms.push(ms),
            Ok((_, false)) => visit.failed += 1,
            Err(e) => {
                tracing::warn!(url, error = %e, "bench request failed");
                visit.failed += 1;
            }
        }
    }
    visit
}
