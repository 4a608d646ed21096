//! The client side of an HTTP CONNECT tunnel (RFC 9110 section 9.3.6),
//! with `Proxy-Authorization: Basic` when the proxy URL has a user.

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::Proxy;
use crate::error::Error;

/// The longest proxy answer head read.
const MAX_HEAD: usize = 16 * 1024;

/// Asks the proxy on `tcp` for a tunnel to `host:port`; on a 2xx answer
/// `tcp` is the tunnel.
pub(super) async fn tunnel<S>(proxy: &Proxy, tcp: &mut S, host: &str, port: u16) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let io = |e: std::io::Error| proxy.error(format!("CONNECT exchange failed: {e}"), None);
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(user) = &proxy.user {
        let pair = format!("{user}:{}", proxy.password.as_deref().unwrap_or_default());
        let token = base64::engine::general_purpose::STANDARD.encode(pair);
        request.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes()).await.map_err(io)?;
    tcp.flush().await.map_err(io)?;
    // Byte by byte, so nothing after the head (the tunnel's first bytes) is
    // taken from the socket.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD {
            return Err(proxy.error("the proxy's answer head is too long", None));
        }
        head.push(tcp.read_u8().await.map_err(io)?);
    }
    let status = status_of(&head).ok_or_else(|| proxy.error("not an HTTP answer to CONNECT", None))?;
    if !(200..300).contains(&status) {
        let why = match status {
            401 | 407 => format!("the proxy refused the credentials, or wants some ({status})"),
            _ => format!("the proxy refused the tunnel with status {status}"),
        };
        return Err(proxy.error(why, Some(status)));
    }
    Ok(())
}

/// The status code of an `HTTP/1.x NNN ...` head.
fn status_of(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/1."))?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::status_of;

    #[test]
    fn the_status_is_read_from_the_answer_head() {
        assert_eq!(
            status_of(b"HTTP/1.1 200 Connection established\r\n\r\n"),
            Some(200)
        );
        assert_eq!(
            status_of(b"HTTP/1.0 407 Proxy Authentication Required\r\n\r\n"),
            Some(407)
        );
        assert_eq!(status_of(b"SSH-2.0-OpenSSH\r\n\r\n"), None);
    }
}
