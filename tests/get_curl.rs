//! `h3fleet get` with curl's flags and curl's exit codes, against an
//! `h3fleet serve` process (whose `/echo` says what arrived).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Output;

use serde_json::Value;
use support::serve::Serve;

/// `h3fleet get URL` for `path` on `serve` with `extra` flags.
async fn get(serve: &Serve, path: &str, extra: &[&str]) -> Output {
    let port = serve.addr.port();
    tokio::process::Command::new(env!("CARGO_BIN_EXE_h3fleet"))
        .args(["get", &format!("https://localhost:{port}{path}")])
        .args(["--cache", "none", "--cacert", &serve.cert])
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .args(extra)
        .output()
        .await
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_out_prints_curls_variables_and_h3fleets_own() {
    let serve = Serve::start();
    let format =
        "%{http_code} %{http_version} %{num_redirects} %{size_download} %{remote_ip} %{ticket_source}\\n";
    let out = get(
        &serve,
        "/redirect/1",
        &["-L", "-o", "/dev/null", "-w", format, "--http3-only"],
    )
    .await;
    assert_eq!(
        stdout(&out),
        format!(
            "200 3 1 {} 127.0.0.1 none\n",
            "h3fleet origin: GET /redirect/0\n".len()
        )
    );
    let out = get(&serve, "/", &["-o", "/dev/null", "-w", "%{json}", "--http2"]).await;
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        (json["http_code"].as_u64(), json["http_version"].as_str()),
        (Some(200), Some("2"))
    );
    assert_eq!(json["remote_port"], serve.addr.port());
    let (connect, total) = (
        json["time_appconnect"].as_f64().unwrap(),
        json["time_total"].as_f64().unwrap(),
    );
    assert!(connect > 0.0 && total >= connect, "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn include_head_and_dump_header_show_the_response_head() {
    let serve = Serve::start();
    let out = get(&serve, "/hello", &["-i", "--http2"]).await;
    let text = stdout(&out);
    assert!(
        text.starts_with("HTTP/2 200\r\n") && text.contains("x-early-data: 0\r\n"),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\nh3fleet origin: GET /hello\n"), "{text}");
    let head = get(&serve, "/hello", &["-I", "--http3-only"]).await;
    assert!(stdout(&head).starts_with("HTTP/3 200\r\n"), "{}", stdout(&head));
    let seen = serve.requests(2).await;
    assert_eq!(seen[1]["method"], "HEAD");
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("head.txt");
    let out = get(&serve, "/hello", &["-D", dump.to_str().unwrap()]).await;
    assert_eq!(stdout(&out), "h3fleet origin: GET /hello\n");
    assert!(std::fs::read_to_string(&dump).unwrap().contains(" 200\r\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_auth_and_headers_are_sent_as_curl_sends_them() {
    let serve = Serve::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data.txt");
    std::fs::write(&file, "a=1\nb=2\n").unwrap();
    let at_file = format!("@{}", file.display());
    let echo = |out: Output| serde_json::from_slice::<Value>(&out.stdout).unwrap();
    let form = echo(
        get(
            &serve,
            "/echo",
            &[
                "-d",
                &at_file,
                "-d",
                "c=3",
                "-u",
                "alice:pw",
                "-A",
                "agent/1",
                "-e",
                "https://ref.example/",
            ],
        )
        .await,
    );
    assert_eq!(
        (form["method"].as_str(), form["body"].as_str()),
        (Some("POST"), Some("a=1b=2&c=3"))
    );
    assert_eq!(
        form["headers"]["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(form["headers"]["authorization"], "Basic YWxpY2U6cHc=");
    assert_eq!(form["headers"]["user-agent"], "agent/1");
    assert_eq!(form["headers"]["referer"], "https://ref.example/");
    let binary = echo(
        get(
            &serve,
            "/echo",
            &["--data-binary", &at_file, "-H", "content-type: text/plain"],
        )
        .await,
    );
    assert_eq!(binary["body"], "a=1\nb=2\n");
    assert_eq!(binary["headers"]["content-type"], "text/plain");
    let json = echo(get(&serve, "/echo", &["--json", "{\"k\":1}", "-X", "PUT"]).await);
    assert_eq!(
        (json["method"].as_str(), json["body"].as_str()),
        (Some("PUT"), Some("{\"k\":1}"))
    );
    assert_eq!(json["headers"]["content-type"], "application/json");
    assert_eq!(json["headers"]["accept"], "application/json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_follow_curls() {
    let serve = Serve::start();
    let fail = get(&serve, "/status/404", &["-f"]).await;
    assert_eq!(
        (code(&fail), stdout(&fail).as_str()),
        (22, ""),
        "-f: 22 and no body"
    );
    assert_eq!(
        code(&get(&serve, "/status/404", &[]).await),
        0,
        "without -f an error status is an answer"
    );
    assert_eq!(
        code(&get(&serve, "/redirect/3", &["-L", "--max-redirs", "1"]).await),
        47
    );
    assert_eq!(code(&get(&serve, "/slow", &["-m", "0.1"]).await), 28);
    let silent = get(&serve, "/status/500", &["-f", "-s"]).await;
    assert_eq!(
        (code(&silent), silent.stderr.is_empty()),
        (22, true),
        "-s: no message"
    );

    let h3fleet = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_h3fleet"))
            .args(args)
            .args(["--cache", "none"])
            .output()
            .unwrap()
    };
    assert_eq!(code(&h3fleet(&["get", "not a url"])), 3);
    let dns = support::dns::DnsServer::start("fleet.test.", &[]).await;
    let addr = dns.addr().to_string();
    assert_eq!(
        code(&h3fleet(&["get", "https://missing.fleet.test/", "--dns", &addr])),
        6
    );
    let closed = support::free_port(None).to_string();
    let refused = h3fleet(&["get", &format!("https://127.0.0.1:{closed}/"), "--http2"]);
    assert_eq!(code(&refused), 7, "{}", String::from_utf8_lossy(&refused.stderr));
    let port = serve.addr.port().to_string();
    let resolve = format!("localhost:{port}:127.0.0.1");
    let untrusted = h3fleet(&[
        "get",
        &format!("https://localhost:{port}/"),
        "--http2",
        "--resolve",
        &resolve,
    ]);
    assert_eq!(
        code(&untrusted),
        60,
        "{}",
        String::from_utf8_lossy(&untrusted.stderr)
    );
    let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let plain_port = plain.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in plain.incoming().take(1) {
            use std::io::Write as _;
            let _ = stream.unwrap().write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        }
    });
    let not_tls = h3fleet(&["get", &format!("https://127.0.0.1:{plain_port}/"), "--http1.1"]);
    assert_eq!(code(&not_tls), 35, "{}", String::from_utf8_lossy(&not_tls.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_asks_for_and_decodes_bodies_as_curl() {
    let serve = Serve::start();
    let plain = h3fleet::server::plain_body();
    for coding in ["gzip", "br", "zstd", "deflate"] {
        let out = get(&serve, &format!("/{coding}"), &["--compressed"]).await;
        assert!(
            stdout(&out) == plain,
            "{coding}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let echo = get(&serve, "/echo", &[]).await;
    let echo: Value = serde_json::from_slice(&echo.stdout).unwrap();
    assert!(
        echo["headers"]["accept-encoding"].is_null(),
        "without --compressed nothing is asked for"
    );
    let raw = get(&serve, "/gzip", &[]).await;
    assert_eq!(&raw.stdout[..2], &[0x1f, 0x8b]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslkeylogfile_gets_the_secrets_of_quic_and_tcp_connections_in_a_private_file() {
    use std::os::unix::fs::PermissionsExt as _;
    let serve = Serve::start();
    let dir = tempfile::tempdir().unwrap();
    for (flag, file) in [("--http3-only", "quic.keys"), ("--http2", "tcp.keys")] {
        let path = dir.path().join(file);
        let port = serve.addr.port();
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_h3fleet"))
            .args([
                "get",
                &format!("https://localhost:{port}/"),
                flag,
                "-o",
                "/dev/null",
            ])
            .args(["--cache", "none", "--cacert", &serve.cert])
            .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
            .env("SSLKEYLOGFILE", &path)
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let log = std::fs::read_to_string(&path).unwrap();
        for label in ["CLIENT_HANDSHAKE_TRAFFIC_SECRET ", "SERVER_TRAFFIC_SECRET_0 "] {
            assert!(
                log.lines().any(|l| l.starts_with(label)),
                "{flag}: no {label} in {log}"
            );
        }
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{flag}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_accepts_a_certificate_nobody_trusts_and_leaves_the_cache_alone() {
    let serve = Serve::start();
    let dir = tempfile::tempdir().unwrap();
    let cache = format!("sqlite:{}", dir.path().join("cache.db").display());
    let port = serve.addr.port();
    let h3fleet = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_h3fleet"))
            .args(args)
            .args(["--cache", &cache])
            .output()
            .unwrap()
    };
    let url = format!("https://localhost:{port}/");
    let resolve = format!("localhost:{port}:127.0.0.1");
    for version in ["--http3-only", "--http2"] {
        let refused = h3fleet(&["get", &url, version, "--resolve", &resolve]);
        assert_eq!(code(&refused), 60, "{version} without -k");
        let out = h3fleet(&["get", &url, version, "--resolve", &resolve, "-k"]);
        assert_eq!(
            code(&out),
            0,
            "{version}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout(&out).starts_with("h3fleet origin: GET /"),
            "{}",
            stdout(&out)
        );
    }
    let entries = || {
        let listed = h3fleet(&["cache", "ls"]);
        assert!(
            listed.status.success(),
            "{}",
            String::from_utf8_lossy(&listed.stderr)
        );
        // The first line is the table's header.
        stdout(&listed).lines().skip(1).count()
    };
    assert_eq!(entries(), 0, "-k wrote to the cache");
    // The same run, verifying, does write: the listing sees entries.
    let verified = h3fleet(&[
        "get",
        &url,
        "--http2",
        "--resolve",
        &resolve,
        "--cacert",
        &serve.cert,
    ]);
    assert_eq!(
        code(&verified),
        0,
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(entries() >= 1, "a verified run left no entry to list");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbose_shows_each_hops_heads_and_tls_on_stderr_but_no_credentials() {
    let serve = Serve::start();
    let out = get(
        &serve,
        "/redirect/1",
        &["-L", "-v", "-u", "bob:hunter2", "-H", "x-trace: on", "--http2"],
    )
    .await;
    assert_eq!(code(&out), 0);
    let err = String::from_utf8_lossy(&out.stderr);
    let port = serve.addr.port();
    for line in [
        format!("* Connected to localhost (127.0.0.1) port {port}"),
        "* Session: full handshake, no ticket offered, early data not attempted".to_owned(),
        "> GET /redirect/1 HTTP/2".to_owned(),
        format!("> Host: localhost:{port}"),
        "> x-trace: on".to_owned(),
        "> authorization: [redacted]".to_owned(),
        "< HTTP/2 302".to_owned(),
        "< location: /redirect/0".to_owned(),
        "* Re-using existing HTTP/2 connection with host localhost".to_owned(),
        "> GET /redirect/0 HTTP/2".to_owned(),
        "< HTTP/2 200".to_owned(),
    ] {
        assert!(err.lines().any(|l| l == line), "no {line:?} in:\n{err}");
    }
    // The password, and its base64 in the header, stay out of it.
    assert!(
        !err.contains("hunter2") && !err.contains("Ym9iOmh1bnRlcjI"),
        "{err}"
    );
    // `-v` is curl's trace, not the debug log; the body alone is on stdout.
    assert!(!err.contains("DEBUG"), "{err}");
    assert_eq!(stdout(&out), "h3fleet origin: GET /redirect/0\n");
    let debug = get(&serve, "/", &["-vv", "--http2"]).await;
    assert!(String::from_utf8_lossy(&debug.stderr).contains("DEBUG"));
}
