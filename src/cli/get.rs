//! `h3fleet get`: one request, curl-style, through the shared session cache.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use h3fleet::ech::EchSource;
use h3fleet::redirect::Policy;
use h3fleet::{Response, Session};

use super::session_args::seconds_arg;
use super::write_out::{self, GetReport};
use super::{get_request, CliError};

#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// The URL to request: `https://`, or `http://` for plain HTTP/1.1.
    url: String,
    /// The request method (default GET, or POST with -d).
    #[arg(
        help_heading = "Request",
        short = 'X',
        long = "request",
        value_name = "METHOD"
    )]
    method: Option<String>,
    /// A request header, `Name: value`. Repeatable.
    #[arg(help_heading = "Request", short = 'H', long = "header", value_name = "K: V")]
    headers: Vec<String>,
    /// The request body, as curl's `-d`: `@FILE` reads a file (without its
    /// newlines), and the type is `application/x-www-form-urlencoded`
    /// unless `-H` says otherwise. Repeatable: joined with `&`.
    #[arg(help_heading = "Request", short = 'd', long = "data", value_name = "DATA")]
    data: Vec<String>,
    /// The request body as given (`@FILE` read as it is).
    #[arg(help_heading = "Request", long = "data-binary", value_name = "DATA")]
    data_binary: Vec<String>,
    /// Upload FILE (`-`: stdin) as the body of a PUT, as curl's `-T`: read
    /// as it is sent, never whole in memory. A URL ending in `/` gets the
    /// file's name appended.
    #[arg(
        help_heading = "Request",
        short = 'T',
        long = "upload-file",
        value_name = "FILE",
        conflicts_with_all = ["data", "data_binary", "json_body"]
    )]
    upload_file: Option<PathBuf>,
    /// A JSON body (`@FILE` reads a file), with `Content-Type` and
    /// `Accept: application/json`, as curl's `--json`.
    #[arg(help_heading = "Request", long = "json", value_name = "DATA")]
    json_body: Vec<String>,
    /// Write the body to FILE instead of stdout.
    #[arg(help_heading = "Output", short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Print FORMAT after the transfer: curl's `%{http_code}`,
    /// `%{time_total}`, `%{time_connect}`, `%{time_appconnect}`,
    /// `%{time_starttransfer}`, `%{http_version}`, `%{url_effective}`,
    /// `%{num_redirects}`, `%{size_download}`, `%{remote_ip}`,
    /// `%{remote_port}`, h3fleet's `%{resumed}`, `%{early_data}`,
    /// `%{ticket_source}`, `%{ticket_reuse}`, `%{ech}`, `%{ech_source}`,
    /// and `%{json}` (all of them as one JSON object).
    #[arg(
        help_heading = "Output",
        short = 'w',
        long = "write-out",
        value_name = "FORMAT"
    )]
    write_out: Option<String>,
    /// Include the response status line and headers in the output.
    #[arg(help_heading = "Output", short = 'i', long = "include")]
    include: bool,
    /// Send a HEAD request and print the response headers.
    #[arg(help_heading = "Request", short = 'I', long = "head")]
    head: bool,
    /// Write the response status line and headers to FILE (`-`: stdout).
    #[arg(
        help_heading = "Output",
        short = 'D',
        long = "dump-header",
        value_name = "FILE"
    )]
    dump_header: Option<PathBuf>,
    /// Fail (exit 22, no body) when the server answers 400 or more.
    #[arg(help_heading = "Output", short = 'f', long = "fail")]
    fail: bool,
    /// No error messages (unless `-S`).
    #[arg(help_heading = "Output", short = 's', long = "silent")]
    silent: bool,
    /// With `-s`, still print an error message when the transfer fails.
    #[arg(help_heading = "Output", short = 'S', long = "show-error")]
    show_error: bool,
    /// `USER:PASSWORD` for HTTP basic authentication.
    #[arg(
        help_heading = "Request",
        short = 'u',
        long = "user",
        value_name = "USER:PASSWORD"
    )]
    user: Option<String>,
    /// The `User-Agent` header.
    #[arg(
        help_heading = "Request",
        short = 'A',
        long = "user-agent",
        value_name = "NAME"
    )]
    user_agent: Option<String>,
    /// The `Referer` header.
    #[arg(help_heading = "Request", short = 'e', long = "referer", value_name = "URL")]
    referer: Option<String>,
    /// The longest the whole transfer may take, in seconds.
    #[arg(
        help_heading = "Connection",
        short = 'm',
        long = "max-time",
        value_name = "SECONDS"
    )]
    max_time: Option<f64>,
    /// The schemes allowed, as curl's `--proto`: `=https` (only https),
    /// `-http`, `+http,+https`; a URL or redirect outside them fails with
    /// exit code 1.
    #[arg(help_heading = "Protocol", long, value_name = "PROTOCOLS")]
    proto: Option<String>,
    /// Ask for a compressed response (gzip, br, zstd, deflate) and decode
    /// it, as curl's `--compressed`; without it none is asked for.
    #[arg(help_heading = "Request", long)]
    compressed: bool,
    /// Follow redirects (as curl's `-L`; without it a redirect is the
    /// answer).
    #[arg(help_heading = "Request", short = 'L', long = "location")]
    location: bool,
    /// With `-L`, the most redirects followed (curl's default 50).
    #[arg(
        help_heading = "Request",
        long = "max-redirs",
        value_name = "NUM",
        default_value_t = 50
    )]
    max_redirs: usize,
    /// The options that configure the session.
    #[command(flatten)]
    pub(crate) session: super::session_args::SessionArgs,
}

fn session(args: &GetArgs) -> Result<Session, CliError> {
    let mut builder = args.session.builder()?;
    builder = builder.redirect(if args.location {
        Policy::limited(args.max_redirs)
    } else {
        Policy::none()
    });
    if let Some(secs) = args.max_time {
        builder = builder.timeout(seconds_arg("--max-time", secs)?);
    }
    builder = builder.https_only(!get_request::Protocols::parse(args.proto.as_deref())?.http);
    // curl honours SSLKEYLOGFILE whenever it is set.
    builder = builder.tls_sslkeylogfile(true);
    let c = args.compressed;
    builder = builder.gzip(c).brotli(c).zstd(c).deflate(c);
    if let Some(agent) = &args.user_agent {
        builder = builder.user_agent(agent.as_str());
    }
    Ok(builder.build()?)
}

pub(crate) async fn run(args: GetArgs, verbose: bool) -> Result<(), CliError> {
    let protocols = get_request::Protocols::parse(args.proto.as_deref())?;
    let session = session(&args)?;
    let request = get_request::build(&session, &args.request_args(protocols))?;
    let started = Instant::now();
    let outcome = exchange(request, &args, started, verbose).await;
    let total = started.elapsed();
    // Keep the tickets this run won, even when the request failed late.
    session.close().await;
    let mut report = outcome?;
    report.time_total = write_out::seconds(total);
    report.total_ms = millis(total);
    if let Some(format) = &args.write_out {
        let mut out = std::io::stdout().lock();
        out.write_all(report.render(format).as_bytes())?;
        out.flush()?;
    }
    if args.fail && report.status >= 400 {
        return Err(Box::new(write_out::HttpFailure(report.status)));
    }
    Ok(())
}

impl GetArgs {
    /// The parts of the arguments that make the request.
    fn request_args(&self, protocols: get_request::Protocols) -> get_request::RequestArgs<'_> {
        get_request::RequestArgs {
            url: &self.url,
            method: self.method.as_deref(),
            head: self.head,
            headers: &self.headers,
            data: &self.data,
            data_binary: &self.data_binary,
            upload: self.upload_file.as_deref(),
            json: &self.json_body,
            user: self.user.as_deref(),
            referer: self.referer.as_deref(),
            protocols,
        }
    }

    /// True when errors are not to be printed (`-s` without `-S`).
    pub(crate) fn quiet(&self) -> bool {
        self.silent && !self.show_error
    }
}

/// Sends the request, writes the head where `-i`, `-I` and `-D` want it
/// and the body where it belongs, and reports the exchange.
async fn exchange(
    request: h3fleet::RequestBuilder,
    args: &GetArgs,
    started: Instant,
    verbose: bool,
) -> Result<GetReport, CliError> {
    let mut response: Response = request.send().await?;
    let starttransfer = started.elapsed();
    if verbose {
        let mut err = std::io::stderr().lock();
        err.write_all(super::verbose::text(&response).as_bytes())?;
        err.flush()?;
    }
    let head = head_text(&response);
    if let Some(path) = &args.dump_header {
        if path.as_os_str() == "-" {
            std::io::stdout().lock().write_all(head.as_bytes())?;
        } else {
            std::fs::write(path, &head).map_err(|e| format!("-D {}: {e}", path.display()))?;
        }
    }
    let failing = args.fail && response.status().as_u16() >= 400;
    let mut sink: Box<dyn Write> = match &args.output {
        _ if failing => Box::new(std::io::sink()),
        Some(path) => {
            Box::new(std::fs::File::create(path).map_err(|e| format!("-o {}: {e}", path.display()))?)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    if args.include || args.head {
        sink.write_all(head.as_bytes())?;
    }
    let mut report = report_of(&response, args, starttransfer);
    while let Some(chunk) = response.chunk().await? {
        report.body_bytes += chunk.len() as u64;
        sink.write_all(&chunk)?;
    }
    sink.flush()?;
    report.size_download = report.body_bytes;
    Ok(report)
}

/// The status line and headers, as curl's `-i` prints them.
fn head_text(response: &Response) -> String {
    let version = super::verbose::label(response.protocol());
    let mut text = format!("{version} {}\r\n", response.status().as_u16());
    for (name, value) in response.headers() {
        text.push_str(&format!(
            "{name}: {}\r\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    text.push_str("\r\n");
    text
}

/// What the response head and its TLS say, before the body.
fn report_of(response: &Response, args: &GetArgs, starttransfer: Duration) -> GetReport {
    let tls = response.tls();
    let connect = if tls.connection_reused {
        0.0
    } else {
        write_out::seconds(tls.handshake_time)
    };
    let version = response.protocol();
    let remote = response.remote_addr();
    GetReport {
        url: args.url.clone(),
        status: response.status().as_u16(),
        http_code: response.status().as_u16(),
        protocol: protocol_name(version).to_owned(),
        http_version: match version {
            http::Version::HTTP_3 => "3",
            http::Version::HTTP_2 => "2",
            _ => "1.1",
        }
        .to_owned(),
        resumed: tls.resumed,
        early_data: tls.early_data.as_str().to_owned(),
        ticket_source: tls.ticket_source_str().to_owned(),
        ech: tls.ech.as_str().to_owned(),
        ech_source: tls.ech_source.map_or("none", EchSource::as_str).to_owned(),
        ticket_reuse: tls.ticket_reuse.as_str().to_owned(),
        ticket_pool_held: tls.ticket_pool_held,
        url_effective: response.url().to_string(),
        num_redirects: response.redirects().len(),
        handshake_ms: millis(tls.handshake_time),
        time_connect: connect,
        // curl's `time_appconnect` is 0 where there is no TLS.
        time_appconnect: if response.url().scheme() == "http" {
            0.0
        } else {
            connect
        },
        time_starttransfer: write_out::seconds(starttransfer),
        remote_ip: remote.map(|a| a.ip().to_string()).unwrap_or_default(),
        remote_port: remote.map_or(0, |a| a.port()),
        ..GetReport::default()
    }
}

/// `h3`, `h2` or `http/1.1`, as ALPN names them.
fn protocol_name(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_3 => "h3",
        http::Version::HTTP_2 => "h2",
        _ => "http/1.1",
    }
}

fn millis(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}
