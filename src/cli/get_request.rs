//! The request `h3fleet get` sends, from curl's flags: method, headers,
//! `-d`/`--data-binary`/`--json` bodies (with `@FILE`), `-u`, `-e`, `-I`.

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
    pub(crate) json: &'a [String],
    pub(crate) user: Option<&'a str>,
    pub(crate) referer: Option<&'a str>,
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

/// The request the flags describe.
pub(crate) fn build(session: &Session, args: &RequestArgs<'_>) -> Result<RequestBuilder, CliError> {
    let body = body(args)?;
    let method = match args.method {
        Some(m) => http::Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .map_err(|_| format!("-X {m:?} is not an HTTP method"))?,
        None if args.head => http::Method::HEAD,
        None if body.is_some() => http::Method::POST,
        None => http::Method::GET,
    };
    let mut request = session.request(method, args.url);
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
