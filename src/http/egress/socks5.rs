//! The client side of SOCKS5 (RFC 1928) CONNECT, with username/password
//! authentication (RFC 1929) when the proxy URL has a user.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Proxy;
use crate::error::Error;

const VERSION: u8 = 5;
const NO_AUTH: u8 = 0;
const USER_PASSWORD: u8 = 2;
const NO_ACCEPTABLE: u8 = 0xff;
const CONNECT: u8 = 1;
const UDP_ASSOCIATE: u8 = 3;

/// Where the proxy is asked to connect (or to send a datagram).
#[derive(Debug, Clone)]
pub(super) enum Target<'a> {
    /// A name the proxy resolves (`socks5h://`).
    Name(&'a str, u16),
    /// An address resolved here (`socks5://`).
    Addr(SocketAddr),
}

/// What the proxy's CONNECT reply codes mean (RFC 1928 section 6).
fn reply_text(code: u8) -> &'static str {
    match code {
        1 => "general SOCKS server failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown reply",
    }
}

/// Asks the proxy on `tcp` to connect to `target`; on success `tcp` is the
/// tunnel.
pub(super) async fn connect(proxy: &Proxy, tcp: &mut TcpStream, target: Target<'_>) -> Result<(), Error> {
    negotiate(proxy, tcp).await?;
    command(proxy, tcp, CONNECT, &target).await.map(drop)
}

/// Asks the proxy on `tcp` to relay UDP datagrams (UDP ASSOCIATE) from
/// `from` (the client's UDP socket); returns where to send them. The
/// association lasts as long as `tcp` stays open.
pub(super) async fn udp_associate(
    proxy: &Proxy,
    tcp: &mut TcpStream,
    from: SocketAddr,
) -> Result<SocketAddr, Error> {
    negotiate(proxy, tcp).await?;
    let relay = command(proxy, tcp, UDP_ASSOCIATE, &Target::Addr(from)).await?;
    match relay {
        // "Send to me": the proxy's own address.
        Some(relay) if relay.ip().is_unspecified() => {
            let proxy_ip = tcp
                .peer_addr()
                .map_err(|e| proxy.error(e.to_string(), None))?
                .ip();
            Ok(SocketAddr::new(proxy_ip, relay.port()))
        }
        Some(relay) => Ok(relay),
        None => Err(proxy.error("the proxy named its UDP relay by name", None)),
    }
}

/// The greeting and, with a user, RFC 1929 authentication.
async fn negotiate(proxy: &Proxy, tcp: &mut TcpStream) -> Result<(), Error> {
    let io = |e: std::io::Error| proxy.error(format!("SOCKS5 exchange failed: {e}"), None);
    let method = if proxy.user.is_some() {
        USER_PASSWORD
    } else {
        NO_AUTH
    };
    tcp.write_all(&[VERSION, 1, method]).await.map_err(io)?;
    let mut choice = [0u8; 2];
    tcp.read_exact(&mut choice).await.map_err(io)?;
    match choice {
        [VERSION, m] if m == method => {}
        [VERSION, NO_ACCEPTABLE] => {
            let why = if proxy.user.is_some() {
                "the proxy refuses username/password authentication"
            } else {
                "the proxy wants authentication (give a user in the proxy URL)"
            };
            return Err(proxy.error(why, Some(u16::from(NO_ACCEPTABLE))));
        }
        _ => return Err(proxy.error("not a SOCKS5 proxy", None)),
    }
    if method == USER_PASSWORD {
        authenticate(proxy, tcp).await?;
    }
    Ok(())
}

/// Sends request `cmd` for `target` and reads the reply: the bound
/// address, if it is one (not a name).
async fn command(
    proxy: &Proxy,
    tcp: &mut TcpStream,
    cmd: u8,
    target: &Target<'_>,
) -> Result<Option<SocketAddr>, Error> {
    let io = |e: std::io::Error| proxy.error(format!("SOCKS5 exchange failed: {e}"), None);
    tcp.write_all(&request(proxy, cmd, target)?).await.map_err(io)?;
    let mut head = [0u8; 4];
    tcp.read_exact(&mut head).await.map_err(io)?;
    if head[0] != VERSION {
        return Err(proxy.error("not a SOCKS5 reply", None));
    }
    if head[1] != 0 {
        let why = format!("the proxy refused: {}", reply_text(head[1]));
        return Err(proxy.error(why, Some(u16::from(head[1]))));
    }
    let len = match head[3] {
        1 => 4,
        4 => 16,
        3 => usize::from(tcp.read_u8().await.map_err(io)?),
        _ => return Err(proxy.error("a SOCKS5 reply with an unknown address type", None)),
    };
    let mut bound = vec![0u8; len + 2];
    tcp.read_exact(&mut bound).await.map_err(io)?;
    let port = u16::from_be_bytes([bound[len], bound[len + 1]]);
    Ok(match head[3] {
        1 => <[u8; 4]>::try_from(&bound[..4])
            .ok()
            .map(|ip| SocketAddr::from((ip, port))),
        4 => <[u8; 16]>::try_from(&bound[..16])
            .ok()
            .map(|ip| SocketAddr::from((ip, port))),
        _ => None,
    })
}

/// RFC 1929: the user and password; the proxy answers 0 for success.
async fn authenticate(proxy: &Proxy, tcp: &mut TcpStream) -> Result<(), Error> {
    let io = |e: std::io::Error| proxy.error(format!("SOCKS5 authentication failed: {e}"), None);
    let user = proxy.user.as_deref().unwrap_or_default().as_bytes();
    let password = proxy.password.as_deref().unwrap_or_default().as_bytes();
    let (Ok(user_len), Ok(password_len)) = (u8::try_from(user.len()), u8::try_from(password.len())) else {
        return Err(proxy.error("a SOCKS5 user or password is at most 255 bytes", None));
    };
    let mut message = vec![1, user_len];
    message.extend_from_slice(user);
    message.push(password_len);
    message.extend_from_slice(password);
    tcp.write_all(&message).await.map_err(io)?;
    let mut status = [0u8; 2];
    tcp.read_exact(&mut status).await.map_err(io)?;
    if status[1] != 0 {
        return Err(proxy.error(
            "the proxy refused the user and password",
            Some(u16::from(status[1])),
        ));
    }
    Ok(())
}

/// Request `cmd` for `target`.
fn request(proxy: &Proxy, cmd: u8, target: &Target<'_>) -> Result<Vec<u8>, Error> {
    let mut message = vec![VERSION, cmd, 0];
    message.extend(address(proxy, target)?);
    Ok(message)
}

/// `ATYP`, the address and the port, as requests and UDP headers carry
/// them.
pub(super) fn address(proxy: &Proxy, target: &Target<'_>) -> Result<Vec<u8>, Error> {
    let mut message = Vec::with_capacity(22);
    let port = match target {
        Target::Addr(SocketAddr::V4(a)) => {
            message.push(1);
            message.extend_from_slice(&a.ip().octets());
            a.port()
        }
        Target::Addr(SocketAddr::V6(a)) => {
            message.push(4);
            message.extend_from_slice(&a.ip().octets());
            a.port()
        }
        Target::Name(name, port) => {
            let len = u8::try_from(name.len())
                .map_err(|_| proxy.error("a name longer than 255 bytes cannot go through SOCKS5", None))?;
            message.extend_from_slice(&[3, len]);
            message.extend_from_slice(name.as_bytes());
            *port
        }
    };
    message.extend_from_slice(&port.to_be_bytes());
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_requests_carry_the_name_or_the_address() {
        let proxy = Proxy::socks5("socks5h://h:1").unwrap();
        let by_name = request(&proxy, CONNECT, &Target::Name("a.example", 443)).unwrap();
        assert_eq!(by_name[..5], [5, 1, 0, 3, 9]);
        assert_eq!(&by_name[5..14], b"a.example");
        assert_eq!(by_name[14..], [1, 187]);
        let by_addr = request(&proxy, CONNECT, &Target::Addr("10.0.0.1:80".parse().unwrap())).unwrap();
        assert_eq!(by_addr, [5, 1, 0, 1, 10, 0, 0, 1, 0, 80]);
    }
}
