//! `lienthong health`: asks a gateway's ops port whether it is ready, for a
//! container's health check in an image with no shell and no curl.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most of an answer read: /readyz says why in a few hundred bytes.
const MAX_ANSWER: u64 = 64 * 1024;

/// Where to ask for a gateway whose ops port listens on `listen`: the
/// loopback address of its family when it listens on every address.
pub fn target(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), listen.port()),
        _ => listen,
    }
}

/// `GET path` on the ops port at `addr` within `timeout`: the body of a 200
/// answer, or why the gateway is not healthy (its status and body, or what
/// failed on the way).
pub async fn check(addr: SocketAddr, path: &str, timeout: Duration) -> Result<String, String> {
    match tokio::time::timeout(timeout, ask(addr, path)).await {
        Ok(answer) => answer,
        Err(_) => Err(format!("no answer from {addr}{path} within {timeout:?}")),
    }
}

async fn ask(addr: SocketAddr, path: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: lienthong-health\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("sending to {addr}: {e}"))?;
    let mut answer = Vec::new();
    stream.take(MAX_ANSWER).read_to_end(&mut answer).await.map_err(|e| format!("reading from {addr}: {e}"))?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("{addr} did not answer HTTP"))?;
    let body = body.trim().to_owned();
    if status == 200 { Ok(body) } else { Err(format!("{addr}{path} answered {status}: {body}")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_address_is_asked_on_loopback() {
        assert_eq!(target("0.0.0.0:9464".parse().unwrap()), "127.0.0.1:9464".parse().unwrap());
        assert_eq!(target("[::]:9464".parse().unwrap()), "[::1]:9464".parse().unwrap());
        assert_eq!(target("10.0.0.5:9464".parse().unwrap()), "10.0.0.5:9464".parse().unwrap());
    }

    #[tokio::test]
    async fn a_closed_port_or_a_silent_one_is_unhealthy() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Accepts and says nothing: the timeout speaks.
        let silent = tokio::spawn(async move {
            let (_socket, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await;
        });
        let e = check(addr, "/readyz", Duration::from_millis(200)).await.unwrap_err();
        assert!(e.contains("within"), "{e}");
        silent.abort();
        let _ = silent.await;
        let e = check(addr, "/readyz", Duration::from_secs(2)).await.unwrap_err();
        assert!(e.contains("cannot connect"), "{e}");
    }
}
