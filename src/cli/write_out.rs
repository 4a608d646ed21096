//! `h3fleet get -w FORMAT`: curl's write-out variables, h3fleet's own, and
//! `%{json}` with all of them; and curl's exit codes for what went wrong.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Everything `-w` can print of one exchange; `%{json}` prints it whole.
/// Times are in seconds, as curl's.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct GetReport {
    /// The URL asked for.
    pub(crate) url: String,
    pub(crate) status: u16,
    /// `h3`, `h2` or `http/1.1`.
    pub(crate) protocol: String,
    pub(crate) resumed: bool,
    /// `accepted`, `rejected` or `not_attempted`.
    pub(crate) early_data: String,
    /// `local`, `backend` or `none`.
    pub(crate) ticket_source: String,
    /// `accepted`, `rejected`, `grease` or `off`.
    #[serde(default)]
    pub(crate) ech: String,
    /// `config`, `local`, `backend`, `dns` or `none`.
    #[serde(default)]
    pub(crate) ech_source: String,
    /// `shared` or `single-use`.
    #[serde(default)]
    pub(crate) ticket_reuse: String,
    /// Under `single-use`: the pool's size when the ticket was taken (it
    /// included; 0: empty), if known.
    #[serde(default)]
    pub(crate) ticket_pool_held: Option<usize>,
    /// The URL of the final response (after `-L`'s redirects).
    #[serde(default)]
    pub(crate) url_effective: String,
    /// How many redirects were followed.
    #[serde(default)]
    pub(crate) num_redirects: usize,
    pub(crate) handshake_ms: f64,
    pub(crate) total_ms: f64,
    pub(crate) body_bytes: u64,
    /// curl's `http_code`: the final status.
    #[serde(default)]
    pub(crate) http_code: u16,
    /// curl's `http_version`: `3`, `2` or `1.1`.
    #[serde(default)]
    pub(crate) http_version: String,
    #[serde(default)]
    pub(crate) time_total: f64,
    /// Until the connection was ready: for QUIC the handshake is the
    /// connection, so `time_connect` and `time_appconnect` are one moment;
    /// h3fleet does not time TCP's own handshake apart from TLS's either.
    /// 0 on a reused connection, as curl.
    #[serde(default)]
    pub(crate) time_connect: f64,
    #[serde(default)]
    pub(crate) time_appconnect: f64,
    /// Until the response head arrived.
    #[serde(default)]
    pub(crate) time_starttransfer: f64,
    #[serde(default)]
    pub(crate) size_download: u64,
    #[serde(default)]
    pub(crate) remote_ip: String,
    #[serde(default)]
    pub(crate) remote_port: u16,
}

/// Seconds, as curl prints them.
pub(crate) fn seconds(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1_000_000.0
}

impl GetReport {
    /// The value of `-w` variable `name`, or `None` for an unknown one.
    fn variable(&self, name: &str) -> Option<String> {
        Some(match name {
            "json" => serde_json::to_string(self).unwrap_or_default(),
            "http_code" | "response_code" => format!("{:03}", self.http_code),
            "http_version" => self.http_version.clone(),
            "time_total" => format!("{:.6}", self.time_total),
            "time_connect" => format!("{:.6}", self.time_connect),
            "time_appconnect" => format!("{:.6}", self.time_appconnect),
            "time_starttransfer" => format!("{:.6}", self.time_starttransfer),
            "url_effective" => self.url_effective.clone(),
            "url" => self.url.clone(),
            "num_redirects" => self.num_redirects.to_string(),
            "size_download" => self.size_download.to_string(),
            "remote_ip" => self.remote_ip.clone(),
            "remote_port" => self.remote_port.to_string(),
            "resumed" => self.resumed.to_string(),
            "early_data" => self.early_data.clone(),
            "ticket_source" => self.ticket_source.clone(),
            "ticket_reuse" => self.ticket_reuse.clone(),
            "ech" => self.ech.clone(),
            "ech_source" => self.ech_source.clone(),
            _ => return None,
        })
    }

    /// `format` with `%{name}` replaced by each variable, `%%` by `%`, and
    /// curl's `\n`, `\r`, `\t` escapes; an unknown variable is left out
    /// with a warning on stderr, as curl does.
    pub(crate) fn render(&self, format: &str) -> String {
        let mut out = String::with_capacity(format.len() + 64);
        let mut rest = format;
        while let Some(at) = rest.find(['%', '\\']) {
            out.push_str(&rest[..at]);
            let tail = &rest[at..];
            if let Some(after) = tail.strip_prefix("%{") {
                if let Some(end) = after.find('}') {
                    let name = &after[..end];
                    match self.variable(name) {
                        Some(value) => out.push_str(&value),
                        None => eprintln!("h3fleet: unknown --write-out variable: '{name}'"),
                    }
                    rest = &after[end + 1..];
                    continue;
                }
            }
            let (text, skip) = match tail.get(..2) {
                Some("%%") => ("%", 2),
                Some("\\n") => ("\n", 2),
                Some("\\r") => ("\r", 2),
                Some("\\t") => ("\t", 2),
                _ => (&tail[..1], 1),
            };
            out.push_str(text);
            rest = &tail[skip..];
        }
        out.push_str(rest);
        out
    }
}

/// curl's exit code for a failed `get`: 3 bad URL, 6 name not resolved,
/// 7 could not connect, 28 timeout, 35 TLS handshake, 47 too many
/// redirects, 60 certificate not trusted; 1 for anything else.
pub(crate) fn curl_exit_code(e: &(dyn std::error::Error + 'static)) -> u8 {
    if let Some(fail) = e.downcast_ref::<HttpFailure>() {
        return fail.code();
    }
    if e.is::<CertProblem>() {
        // CURLE_SSL_CERTPROBLEM.
        return 58;
    }
    let Some(e) = e.downcast_ref::<h3fleet::Error>() else {
        return 1;
    };
    // BoringSSL names a chain it could not verify (over QUIC h3fleet's
    // crypto layer says "certificate verification: ..."); a server's alert
    // is bad_certificate or unknown_ca.
    let text = format!("{e} {:?}", e);
    let untrusted = [
        "CERTIFICATE_VERIFY_FAILED",
        "certificate verify failed",
        "certificate verification:",
        "UnknownCa",
        "unknown_ca",
        "BadCertificate",
    ]
    .iter()
    .any(|needle| text.contains(needle));
    if let h3fleet::Error::Proxy { proxy, reason, .. } = e {
        return proxy_exit_code(proxy, reason, untrusted);
    }
    if e.is_timeout() {
        28
    } else if matches!(e, h3fleet::Error::Scheme { .. }) {
        // CURLE_UNSUPPORTED_PROTOCOL, also for a protocol `--proto` left out.
        1
    } else if e.is_url() {
        3
    } else if e.is_dns() {
        6
    } else if e.is_redirect() {
        47
    } else if (e.is_tls() || e.is_connect()) && untrusted {
        60
    } else if e.is_tls() {
        35
    } else if e.is_connect() {
        7
    } else {
        1
    }
}

/// curl's codes for a proxy failure: 5 its name did not resolve, 7 it
/// could not be reached, 60 or 35 TLS with an `https://` proxy failed (its
/// certificate untrusted, or otherwise), 56 an HTTP proxy refused the
/// tunnel, 97 a SOCKS proxy failed.
fn proxy_exit_code(proxy: &str, reason: &str, untrusted: bool) -> u8 {
    if reason.starts_with("cannot resolve the proxy") {
        5
    } else if reason.starts_with("cannot connect to the proxy") {
        7
    } else if reason.starts_with("TLS with the proxy") {
        if untrusted {
            60
        } else {
            35
        }
    } else if proxy.starts_with("http://") || proxy.starts_with("https://") {
        56
    } else {
        97
    }
}

/// `--cert`/`--key` could not be read or do not match.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct CertProblem(pub(crate) String);

/// `-f`: the server answered an error status.
#[derive(Debug, thiserror::Error)]
#[error("the requested URL returned error: {0}")]
pub(crate) struct HttpFailure(pub(crate) u16);

impl HttpFailure {
    /// curl's 22.
    fn code(&self) -> u8 {
        22
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_escapes_and_json_render_as_curl() {
        let report = GetReport {
            http_code: 200,
            http_version: "3".into(),
            time_total: 0.0123,
            resumed: true,
            ..GetReport::default()
        };
        let text = report.render("%{http_code} %{http_version} %{time_total} %{resumed} 100%% %{nope}\\n");
        assert_eq!(text, "200 3 0.012300 true 100% \n");
        let json: serde_json::Value = serde_json::from_str(&report.render("%{json}")).unwrap();
        assert_eq!(
            (json["http_code"].as_u64(), json["resumed"].as_bool()),
            (Some(200), Some(true))
        );
        assert_eq!(report.render("50% off \\ %{"), "50% off \\ %{");
    }
}
