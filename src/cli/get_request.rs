//! The request `h3fleet get` sends, from curl's flags: method, headers,
//! `-d`/`--data-binary`/`--json` bodies (with `@FILE`), `-u`, `-e`, `-I`,
//! and the schemes `--proto` allows.

use h3fleet::{RequestBuilder, Session};

use super::CliError;

/// The flags that shape the request.
pub(crate) struct RequestArgs<'a> {
    pub(crate) url: &'a str,
    pub(crate) method: Option<&'a str>,
    pub(crate) head: bool,
    pub(crate) headers: &'a [String],
    pub(crate) data: &'a [String],
    pub(crate) data_binary: &'a [String],
    pub(crate) upload: Option<&'a std::path::Path>,
    pub(crate) json: &'a [String],
    pub(crate) user: Option<&'a str>,
    pub(crate) referer: Option<&'a str>,
    pub(crate) protocols: Protocols,
}

/// The schemes a `get` may request, from curl's `--proto` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Protocols {
    pub(crate) http: bool,
    pub(crate) https: bool,
}

impl Protocols {
    /// curl's syntax: comma-separated names, each `+` (add, the default),
    /// `-` (remove) or `=` (only these so far), `all` for both. Names curl
    /// knows but h3fleet does not speak (ftp, ...) change nothing.
    pub(crate) fn parse(spec: Option<&str>) -> Result<Self, CliError> {
        let mut allowed = Self {
            http: true,
            https: true,
        };
        let Some(spec) = spec else { return Ok(allowed) };
        for token in spec.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (op, name) = match token.as_bytes()[0] {
                b'+' | b'-' | b'=' => (token.as_bytes()[0], &token[1..]),
                _ => (b'+', token),
            };
            if op == b'=' {
                allowed = Self {
                    http: false,
                    https: false,
                };
            }
            let on = op != b'-';
            match name.to_ascii_lowercase().as_str() {
                "all" => allowed = Self { http: on, https: on },
                "http" => allowed.http = on,
                "https" => allowed.https = on,
                "" => return Err(format!("--proto {spec:?}: empty protocol name").into()),
                _ => {}
            }
        }
        Ok(allowed)
    }

    /// Refuses `url` if its scheme is left out (an `http://` one is refused
    /// by the session's `https_only`, redirects included).
    pub(crate) fn check(self, url: &str) -> Result<(), CliError> {
        let https = url.get(..8).is_some_and(|s| s.eq_ignore_ascii_case("https://"));
        if https && !self.https {
            return Err(Box::new(h3fleet::Error::Scheme {
                url: url.to_owned(),
                reason: "https refused by --proto",
            }));
        }
        Ok(())
    }
}

/// The body and the content type curl would give it.
struct Body {
    bytes: Vec<u8>,
    content_type: Option<&'static str>,
    json: bool,
}

/// `DATA`, or the contents of `FILE` for `@FILE` (`@-`: stdin); `strip`
/// drops carriage returns and newlines, as curl's `-d @FILE` does.
fn data_value(value: &str, strip: bool) -> Result<Vec<u8>, CliError> {
    let Some(path) = value.strip_prefix('@') else {
        return Ok(value.as_bytes().to_vec());
    };
    let mut bytes = if path == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
        buf
    } else {
        std::fs::read(path).map_err(|e| format!("@{path}: {e}"))?
    };
    if strip {
        bytes.retain(|b| *b != b'\n' && *b != b'\r');
    }
    Ok(bytes)
}

/// The body from `-d`, `--data-binary` and `--json` (all joined with `&`,
/// as curl joins repeated `-d`s), if any.
fn body(args: &RequestArgs<'_>) -> Result<Option<Body>, CliError> {
    let mut parts: Vec<Vec<u8>> = Vec::new();
    for d in args.data {
        parts.push(data_value(d, true)?);
    }
    for d in args.data_binary {
        parts.push(data_value(d, false)?);
    }
    for d in args.json {
        parts.push(data_value(d, false)?);
    }
    if parts.is_empty() {
        return Ok(None);
    }
    let json = !args.json.is_empty();
    Ok(Some(Body {
        bytes: parts.join(&b'&'),
        content_type: Some(if json {
            "application/json"
        } else {
            "application/x-www-form-urlencoded"
        }),
        json,
    }))
}

/// curl's `-T FILE` to a URL ending in `/`: the file's name is appended.
fn upload_url(url: &str, path: &std::path::Path) -> String {
    match path.file_name().and_then(|n| n.to_str()) {
        Some(name) if url.ends_with('/') && path.as_os_str() != "-" => {
            let encoded: String = url::form_urlencoded::byte_serialize(name.as_bytes()).collect();
            format!("{url}{encoded}")
        }
        _ => url.to_owned(),
    }
}

/// The body of `-T FILE` (`-`: stdin), read in pieces as it is sent.
fn upload_body(path: &std::path::Path) -> Result<h3fleet::Body, CliError> {
    const PIECE: usize = 64 * 1024;
    let reader: Box<dyn tokio::io::AsyncRead + Send + Unpin> = if path.as_os_str() == "-" {
        Box::new(tokio::io::stdin())
    } else {
        let file = std::fs::File::open(path).map_err(|e| format!("-T {}: {e}", path.display()))?;
        Box::new(tokio::fs::File::from_std(file))
    };
    let pieces = futures_util::stream::try_unfold(reader, |mut reader| async move {
        let mut buf = vec![0u8; PIECE];
        let n = tokio::io::AsyncReadExt::read(&mut reader, &mut buf).await?;
        buf.truncate(n);
        Ok::<_, std::io::Error>((n > 0).then_some((buf, reader)))
    });
    Ok(h3fleet::Body::wrap_stream(pieces))
}

/// The request the flags describe.
pub(crate) fn build(session: &Session, args: &RequestArgs<'_>) -> Result<RequestBuilder, CliError> {
    args.protocols.check(args.url)?;
    let body = body(args)?;
    let method = match args.method {
        Some(m) => http::Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .map_err(|_| format!("-X {m:?} is not an HTTP method"))?,
        None if args.head => http::Method::HEAD,
        None if args.upload.is_some() => http::Method::PUT,
        None if body.is_some() => http::Method::POST,
        None => http::Method::GET,
    };
    let mut request = match args.upload {
        Some(path) => session
            .request(method, upload_url(args.url, path))
            .body(upload_body(path)?),
        None => session.request(method, args.url),
    };
    let mut has_type = false;
    for header in args.headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| format!("-H {header:?}: expected `Name: value`"))?;
        has_type |= name.trim().eq_ignore_ascii_case("content-type");
        request = request.header(name.trim(), value.trim());
    }
    if let Some(referer) = args.referer {
        request = request.header(http::header::REFERER, referer);
    }
    if let Some(user) = args.user {
        let (name, password) = match user.split_once(':') {
            Some((name, password)) => (name, Some(password)),
            None => (user, None),
        };
        request = request.basic_auth(name, password);
    }
    if let Some(body) = body {
        if let (Some(content_type), false) = (body.content_type, has_type) {
            request = request.header(http::header::CONTENT_TYPE, content_type);
        }
        if body.json {
            request = request.header(http::header::ACCEPT, "application/json");
        }
        request = request.body(body.bytes);
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::Protocols;

    fn parse(spec: &str) -> (bool, bool) {
        let p = Protocols::parse(Some(spec)).unwrap();
        (p.http, p.https)
    }

    #[test]
    fn proto_lists_read_as_curl_reads_them() {
        assert_eq!(parse("=https"), (false, true));
        assert_eq!(parse("-http"), (false, true));
        assert_eq!(parse("-all,+http"), (true, false));
        assert_eq!(parse("=http,https"), (true, true));
        assert_eq!(parse("+ftp"), (true, true));
        assert!(Protocols::parse(Some("=")).is_err());
    }

    #[test]
    fn a_scheme_left_out_is_refused() {
        let only_http = Protocols {
            http: true,
            https: false,
        };
        assert!(only_http.check("HTTPS://example.com/").is_err());
        assert!(only_http.check("http://example.com/").is_ok());
    }
}
