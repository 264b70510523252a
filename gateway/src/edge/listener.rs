//! Connections: accepted, TLS-terminated and served here, each with bounds
//! one client cannot stretch to hold what every client shares.
//!
//! - At most `server.max_connections` open at once, and
//!   `server.max_connections_per_ip` from one address; beyond, a new one is
//!   closed at once.
//! - At most `server.max_streams_per_connection` calls at once on one HTTP/2
//!   connection (advertised in SETTINGS; h2 refuses more).
//! - A new connection must finish its TLS handshake and greet as an HTTP/2
//!   client does (preface and SETTINGS) or begin a call within
//!   `server.header_read_timeout` (silent TCP, a partial preface, a TLS
//!   handshake left hanging); an HTTP/1.1 request's head must arrive within
//!   it too.
//! - A connection without calls for `server.idle_timeout` is closed with a
//!   graceful GOAWAY (SETTINGS then nothing, a header block never finished);
//!   HTTP/2 keepalive pings find dead peers.
//! - After `server.max_connection_age` a connection gets a graceful GOAWAY
//!   (clients reconnect, spreading over replicas behind a layer-4 balancer)
//!   and `server.max_connection_age_grace` to finish its calls.
//! - At drain every connection gets a GOAWAY; the server waits for them.
//!
//! TLS offers ALPN `h2` and `http/1.1` (gRPC-Web and webhook pushes).

use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tonic::body::Body;
use tower::Service;

use crate::gateway::apps::ClientCertificates;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long a connection closed without calls running lingers for its
/// GOAWAY to be sent.
const LINGER: Duration = Duration::from_secs(1);

/// A timer that is off: far enough never to fire.
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The bounds of every connection (from `[server]`).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most connections open at once from one client address.
    pub max_connections_per_ip: usize,
    /// Most concurrent calls on one HTTP/2 connection.
    pub max_streams_per_connection: u32,
    /// Time to finish the TLS handshake and begin the first call; time to
    /// read an HTTP/1.1 request head.
    pub header_read_timeout: Duration,
    /// A connection without calls this long is closed (none: never).
    pub idle_timeout: Option<Duration>,
    /// HTTP/2 keepalive ping interval (none: no pings).
    pub keepalive_interval: Option<Duration>,
    /// How long a keepalive ping may go unanswered.
    pub keepalive_timeout: Duration,
    /// A connection this old is asked to go away (none: never).
    pub max_connection_age: Option<Duration>,
    /// Calls still running on it get this long.
    pub max_connection_age_grace: Duration,
    /// The HTTP/2 stack's own header-block bound. Blocks between the
    /// configured limit and this one are answered with a gRPC status by
    /// admission; only beyond this does a client see HTTP 431.
    pub hard_header_list_bytes: u32,
}

/// Counts of what the listener did, for metrics and readiness.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    open: AtomicUsize,
    per_ip: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
    refused_over_limit: AtomicU64,
    header_timeouts: AtomicU64,
}

impl ConnectionStats {
    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections closed at once because `max_connections` (or
    /// `max_connections_per_ip` from their address) were open.
    pub fn refused_over_limit(&self) -> u64 {
        self.refused_over_limit.load(Ordering::Relaxed)
    }

    /// Connections closed for not beginning a call within the header read
    /// timeout (including TLS handshakes not finished in time).
    pub fn header_timeouts(&self) -> u64 {
        self.header_timeouts.load(Ordering::Relaxed)
    }
}

/// The TLS acceptor of `[server.tls]`: TLS 1.2 and 1.3 on aws-lc, ALPN `h2`
/// and `http/1.1`, client certificates verified against `client_ca_file`.
pub fn tls_acceptor(tls: &crate::config::TlsConfig) -> anyhow::Result<TlsAcceptor> {
    use tokio_rustls::rustls;
    let certs = CertificateDer::pem_file_iter(&tls.cert_file)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .with_context(|| format!("reading server.tls.cert_file ({})", tls.cert_file.display()))?;
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(&tls.key_file)
        .with_context(|| format!("reading server.tls.key_file ({})", tls.key_file.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &tls.client_ca_file {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca)
                .with_context(|| format!("reading server.tls.client_ca_file ({})", ca.display()))?
            {
                roots
                    .add(cert.with_context(|| format!("reading server.tls.client_ca_file ({})", ca.display()))?)
                    .context("server.tls.client_ca_file holds a certificate that cannot be a trust anchor")?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if tls.client_cert_required { verifier } else { verifier.allow_unauthenticated() };
            builder.with_client_cert_verifier(verifier.build().context("server.tls.client_ca_file")?)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .context("server.tls.cert_file and key_file do not make a usable certificate and key")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `service` on every connection `listener` accepts until `stop` turns
/// true; then stops accepting, asks every connection to go away and returns
/// once all have closed (the caller bounds that wait).
pub async fn serve<S, B>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    limits: ConnectionLimits,
    stats: Arc<ConnectionStats>,
    service: S,
    mut stop: watch::Receiver<bool>,
) where
    S: Service<Request<Body>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(usize::try_from(limits.hard_header_list_bytes).unwrap_or(usize::MAX).max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_streams_per_connection)
        .keep_alive_interval(limits.keepalive_interval)
        .keep_alive_timeout(limits.keepalive_timeout)
        .max_header_list_size(limits.hard_header_list_bytes)
        .max_pending_accept_reset_streams(Some(20))
        .max_local_error_reset_streams(Some(1024));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // Every connection holds a receiver; the server waits for all to drop.
    let (goaway, goaway_rx) = watch::channel(false);
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: let some close.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            stats.refused_over_limit.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("connection refused: server.max_connections are open");
            continue;
        };
        let Some(open) = OpenConnection::count(&stats, peer.ip(), limits.max_connections_per_ip) else {
            stats.refused_over_limit.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("connection refused: server.max_connections_per_ip are open from its address");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let conn = Connection {
            builder: builder.clone(),
            limits,
            stats: stats.clone(),
            goaway: goaway_rx.clone(),
            accepted: Instant::now(),
        };
        let (service, tls) = (service.clone(), tls.clone());
        tokio::spawn(async move {
            conn.handshake_and_serve(tcp, tls, service).await;
            // Counted out even if serving panicked (the guards drop).
            drop((open, slot));
        });
    }
    drop(listener);
    let _ = goaway.send(true);
    drop(goaway_rx);
    goaway.closed().await;
}

/// One open connection, counted in [`ConnectionStats`] until dropped.
struct OpenConnection {
    stats: Arc<ConnectionStats>,
    ip: std::net::IpAddr,
}

impl OpenConnection {
    /// Counts a connection from `ip`, unless `max_per_ip` are open from it.
    fn count(stats: &Arc<ConnectionStats>, ip: std::net::IpAddr, max_per_ip: usize) -> Option<Self> {
        let mut per_ip = stats.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let open = per_ip.entry(ip).or_default();
        if *open >= max_per_ip {
            return None;
        }
        *open += 1;
        stats.open.fetch_add(1, Ordering::Relaxed);
        Some(Self { stats: stats.clone(), ip })
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
        let mut per_ip = self.stats.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(open) = per_ip.get_mut(&self.ip) {
            *open -= 1;
            if *open == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

struct Connection {
    builder: Builder<TokioExecutor>,
    limits: ConnectionLimits,
    stats: Arc<ConnectionStats>,
    goaway: watch::Receiver<bool>,
    accepted: Instant,
}

impl Connection {
    async fn handshake_and_serve<S, B>(self, tcp: TcpStream, tls: Option<TlsAcceptor>, service: S)
    where
        S: Service<Request<Body>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let Some(acceptor) = tls else { return self.serve(tcp, None, service).await };
        let handshake = tokio::time::timeout_at(self.accepted + self.limits.header_read_timeout, acceptor.accept(tcp));
        match handshake.await {
            Ok(Ok(stream)) => {
                let certs = stream.get_ref().1.peer_certificates().map(|c| ClientCertificates(Arc::new(c.to_vec())));
                self.serve(stream, certs, service).await;
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
            Err(_) => {
                self.stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("TLS handshake not finished within server.header_read_timeout");
            }
        }
    }

    async fn serve<I, S, B>(self, io: I, certs: Option<ClientCertificates>, service: S)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        S: Service<Request<Body>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let calls = Arc::new(CallCount::new(self.accepted));
        let counted = Counted { inner: service, calls: calls.clone(), certs };
        let io = Preface::new(io);
        let greeted = io.greeted.clone();
        let conn = self.builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(counted));
        let mut conn = pin!(conn);
        let limits = self.limits;
        let mut goaway = self.goaway;
        let mut first_call = pin!(tokio::time::sleep_until(self.accepted + limits.header_read_timeout));
        let idle_timeout = limits.idle_timeout.unwrap_or(NEVER);
        let mut idle = pin!(tokio::time::sleep_until(self.accepted + idle_timeout));
        let mut age = pin!(tokio::time::sleep_until(self.accepted + limits.max_connection_age.unwrap_or(NEVER)));
        // Set once the connection was asked to go away: when it is closed
        // regardless.
        let mut closing = pin!(tokio::time::sleep(Duration::ZERO));
        let mut asked_to_close = false;
        // Whether the client has greeted or called, so is not stalling.
        let mut proven = false;
        loop {
            let grace = tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = closing.as_mut(), if asked_to_close => {
                    tracing::debug!("connection closed: it did not end within its grace period");
                    return;
                }
                _ = first_call.as_mut(), if !asked_to_close && !proven => {
                    // (Conditions are read when the wait begins: look again.)
                    if calls.started() > 0 || greeted.load(Ordering::Relaxed) {
                        proven = true;
                        continue;
                    }
                    self.stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!("connection closed: neither an HTTP/2 greeting nor a call within server.header_read_timeout");
                    LINGER
                }
                _ = idle.as_mut(), if !asked_to_close && limits.idle_timeout.is_some() => {
                    let now = Instant::now();
                    match calls.idle_since() {
                        Some(since) if now >= since + idle_timeout => {
                            // No call runs, so no grace is needed beyond
                            // sending the GOAWAY.
                            tracing::debug!("connection closed: idle for server.idle_timeout");
                            LINGER
                        }
                        Some(since) => {
                            idle.as_mut().reset(since + idle_timeout);
                            continue;
                        }
                        None => {
                            idle.as_mut().reset(now + idle_timeout);
                            continue;
                        }
                    }
                }
                _ = age.as_mut(), if !asked_to_close && limits.max_connection_age.is_some() => {
                    // Calls still running get the grace period.
                    tracing::debug!("connection asked to go away: server.max_connection_age");
                    limits.max_connection_age_grace
                }
                _ = goaway.wait_for(|g| *g), if !asked_to_close => {
                    // Draining: the server bounds the wait (drain_timeout).
                    Duration::from_secs(24 * 3600)
                }
            };
            conn.as_mut().graceful_shutdown();
            asked_to_close = true;
            closing.as_mut().reset(Instant::now() + grace);
        }
    }
}

/// The client's side of a connection, watched until it has greeted as an
/// HTTP/2 client does (the connection preface and a SETTINGS frame). From
/// then on an idle connection is a client keeping it warm, governed by the
/// idle timeout; before, only a call (HTTP/1.1) proves it is not stalling.
struct Preface<I> {
    inner: I,
    /// The first bytes read, until the greeting is complete or ruled out.
    head: Vec<u8>,
    greeted: Arc<std::sync::atomic::AtomicBool>,
    watching: bool,
}

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

impl<I> Preface<I> {
    fn new(inner: I) -> Self {
        Self { inner, head: Vec::new(), greeted: Default::default(), watching: true }
    }

    fn saw(&mut self, bytes: &[u8]) {
        let settings_header = H2_PREFACE.len() + 9;
        let room = (settings_header + 16 * 1024).saturating_sub(self.head.len());
        self.head.extend_from_slice(&bytes[..bytes.len().min(room)]);
        let n = self.head.len().min(H2_PREFACE.len());
        if self.head[..n] != H2_PREFACE[..n] {
            // HTTP/1.1 (or not HTTP at all): only a call will do.
            self.watching = false;
            self.head = Vec::new();
            return;
        }
        if let Some(frame) = self.head.get(H2_PREFACE.len()..settings_header) {
            let length = usize::from(frame[0]) << 16 | usize::from(frame[1]) << 8 | usize::from(frame[2]);
            let is_settings = frame[3] == 0x4;
            if !is_settings {
                self.watching = false;
            } else if self.head.len() >= settings_header + length {
                self.greeted.store(true, Ordering::Relaxed);
                self.watching = false;
            }
            if !self.watching {
                self.head = Vec::new();
            }
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Preface<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.watching && matches!(polled, Poll::Ready(Ok(()))) {
            let fresh = buf.filled()[before..].to_vec();
            self.saw(&fresh);
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Preface<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The calls on one connection: how many began, how many run, since when it
/// has had none.
#[derive(Debug)]
struct CallCount {
    opened: Instant,
    started: AtomicU64,
    running: AtomicUsize,
    /// Milliseconds after `opened` when the last call ended.
    idle_since_ms: AtomicU64,
}

impl CallCount {
    fn new(opened: Instant) -> Self {
        Self { opened, started: AtomicU64::new(0), running: AtomicUsize::new(0), idle_since_ms: AtomicU64::new(0) }
    }

    fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// When the connection last had no call running; none while one runs.
    fn idle_since(&self) -> Option<Instant> {
        (self.running.load(Ordering::Acquire) == 0)
            .then(|| self.opened + Duration::from_millis(self.idle_since_ms.load(Ordering::Relaxed)))
    }

    fn begin(self: &Arc<Self>) -> CallGuard {
        self.started.fetch_add(1, Ordering::Relaxed);
        self.running.fetch_add(1, Ordering::AcqRel);
        CallGuard(self.clone())
    }
}

/// One running call; dropped when its answer has been sent (or abandoned).
#[derive(Debug)]
struct CallGuard(Arc<CallCount>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        let since = u64::try_from(self.0.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.idle_since_ms.store(since, Ordering::Relaxed);
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The service of one connection: counts its calls and gives each the
/// connection's client certificate.
#[derive(Debug, Clone)]
struct Counted<S> {
    inner: S,
    calls: Arc<CallCount>,
    certs: Option<ClientCertificates>,
}

impl<S, B> Service<Request<Incoming>> for Counted<S>
where
    S: Service<Request<Body>, Response = Response<B>> + Send,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
{
    type Response = Response<CountedBody<B>>;
    type Error = S::Error;
    type Future = futures_util::future::BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let guard = self.calls.begin();
        let mut req = req.map(Body::new);
        if let Some(certs) = &self.certs {
            req.extensions_mut().insert(certs.clone());
        }
        let answer = self.inner.call(req);
        Box::pin(async move {
            let response = answer.await?;
            Ok(response.map(|inner| CountedBody { inner, _guard: guard }))
        })
    }
}

pin_project_lite::pin_project! {
    /// An answer's body; the call ends when it is dropped.
    struct CountedBody<B> {
        #[pin]
        inner: B,
        _guard: CallGuard,
    }
}

impl<B: http_body::Body> http_body::Body for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
