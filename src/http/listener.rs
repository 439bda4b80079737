//! The HTTP server around the app (HTTP/1.1, and HTTPS with HTTP/2 when a certificate is set):
//! what actix-web's `HttpServer` assembles, assembled here for one reason: a connection that ends
//! in an error is logged here, with its peer, at a level that says whose fault it was. actix-http's dispatcher logs such ends itself as ERROR with no
//! address, so a client sending garbage read like a server fault nobody could trace.

use std::net::SocketAddr;
use std::time::Duration;

use actix_http::{HttpService, error::DispatchError};
use actix_server::Server;
use actix_service::{Service, ServiceFactory, ServiceFactoryExt, apply_fn_factory, boxed, map_config};
use actix_tls::accept::TlsError;
use actix_web::dev::AppConfig;
use actix_web::middleware::{Condition, from_fn};
use actix_web::{App, web};
use tokio::net::TcpStream;

use crate::state::AppState;

/// actix-http's own logger of connection ends, silenced in the log output (`log_filter`) since
/// [`ConnectionEnd`] logs every such end, with the peer.
const DISPATCHER_TARGET: &str = "actix_http::h1::dispatcher";

/// How connections are timed, and how many may be open.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Open connections, all listeners together (`limits.max_connections`).
    pub max_connections: u32,
    /// For a request's head (its body has `server.request_body_timeout`, `body_deadline`).
    pub request_head: Duration,
    /// For a closing connection to go.
    pub disconnect: Duration,
    /// For in-flight requests to finish after a shutdown signal.
    pub shutdown_grace: Duration,
}

/// What a listener serves: `routes::configure`, or the metrics listener's one route.
type RouteTable = fn(&mut web::ServiceConfig);

/// Where the server listens.
#[derive(Debug, Clone, Copy)]
pub struct Addresses {
    /// Everything but what `metrics` takes.
    pub main: SocketAddr,
    /// `/metrics` alone (`metrics.listen`).
    pub metrics: Option<SocketAddr>,
}

/// Binds the addresses (backlog 1024, as actix-web's `HttpServer`) and returns the server to run
/// with the addresses it got (either may ask for port 0). With `tls`, the main address speaks
/// HTTPS (HTTP/2 or HTTP/1.1 by ALPN). An error names the address it concerns.
pub fn bind(
    listen: Addresses,
    state: web::Data<AppState>,
    connections: ConnectionLimits,
    tls: Option<rustls::ServerConfig>,
) -> Result<(Server, Addresses), (SocketAddr, std::io::Error)> {
    let main = tcp_listener(listen.main).map_err(|e| (listen.main, e))?;
    let metrics = match listen.metrics {
        Some(addr) => Some(tcp_listener(addr).map_err(|e| (addr, e))?),
        None => None,
    };
    let bound = Addresses {
        main: main.local_addr().map_err(|e| (listen.main, e))?,
        metrics: metrics.as_ref().and_then(|l| l.local_addr().ok()),
    };
    // actix-server caps connections per worker thread.
    let workers = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    let per_worker = (connections.max_connections as usize).div_ceil(workers).max(1);
    let mut builder = Server::build()
        .workers(workers)
        .max_concurrent_connections(per_worker)
        .shutdown_timeout(connections.shutdown_grace.as_secs());
    let shutdown = builder.graceful_shutdown_signal();
    let listeners: [(&str, Option<std::net::TcpListener>, RouteTable, _); 2] = [
        ("pkgmirror", Some(main), crate::routes::configure, tls),
        ("metrics", metrics, crate::http::configure_metrics_listener, None),
    ];
    for (name, listener, routes, tls) in listeners {
        let Some(listener) = listener else { continue };
        let addr = listener.local_addr().map_err(|e| (listen.main, e))?;
        let state = state.clone();
        let shutdown = shutdown.clone();
        builder = builder
            .listen(name, listener, move || {
                let shutdown = shutdown.clone();
                // The host stands in for requests without a `Host` header, as `HttpServer` sets
                // it. actix-web builds an `AppConfig` only through this hidden constructor;
                // Cargo.lock pins it.
                let app_config = AppConfig::__priv_test_new(tls.is_some(), addr.to_string(), addr);
                let app = map_config(app(state.clone(), routes), move |()| app_config.clone());
                // The same settings for HTTP and HTTPS, whose services differ in their stream type.
                macro_rules! http_service {
                    () => {
                        HttpService::build()
                            // Idle keep-alive connections close at once on shutdown instead of
                            // holding it up.
                            .graceful_shutdown_signal(move || {
                                let shutdown = shutdown.clone();
                                async move { shutdown.notified().await }
                            })
                            .client_request_timeout(connections.request_head)
                            .client_disconnect_timeout(connections.disconnect)
                            .local_addr(addr)
                    };
                }
                match &tls {
                    None => boxed::factory(logging_ends(http_service!().h1(app).tcp())),
                    Some(config) => boxed::factory(logging_ends(
                        http_service!()
                            .secure()
                            .tcp_nodelay(true)
                            .finish(app)
                            .rustls_0_23(config.clone()),
                    )),
                }
            })
            .map_err(|e| (addr, e))?;
    }
    Ok((builder.run(), bound))
}

/// The application on one listener: the middleware every listener has, and its routes.
fn app(
    state: web::Data<AppState>,
    routes: RouteTable,
) -> App<
    impl ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(state.clone())
        .wrap(Condition::new(!state.anonymous_read, from_fn(super::read_access)))
        .wrap(from_fn(super::body_deadline))
        .wrap(from_fn(super::limit_clients))
        .wrap(from_fn(super::html_errors))
        .wrap(from_fn(super::access_log))
        .wrap(from_fn(super::measure))
        .configure(routes)
}

/// Serves each connection with `service`, and logs one that ends in an error with its peer.
fn logging_ends<S, E>(
    service: S,
) -> impl ServiceFactory<TcpStream, Config = (), Response = (), Error = (), InitError = ()>
where
    S: ServiceFactory<TcpStream, Config = (), Response = (), Error = E, InitError = ()>,
    S::Service: 'static,
    S::Future: 'static,
    E: ConnectionEnd + 'static,
{
    apply_fn_factory(service, |io: TcpStream, connection: &S::Service| {
        let peer = io.peer_addr().ok();
        // A stored file goes out as headers, then body chunks: with Nagle on, a keep-alive
        // client's delayed ACK stalls each such response by up to 40 ms. (The HTTP/1 service
        // ignores its own `tcp_nodelay` setting, so it is set here.)
        if let Err(e) = io.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let served = connection.call(io);
        async move {
            if let Err(e) = served.await {
                let peer = peer.map_or_else(|| "unknown".to_owned(), |p| p.to_string());
                e.log(&peer);
            }
            Ok::<(), E>(())
        }
    })
    .map_err(|_: E| ())
}

fn tcp_listener(listen: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = match listen {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // A restart must not wait for the old process's connections in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(listen)?;
    socket.listen(1024)?.into_std()
}

/// How a connection that ended in an error is logged, with its peer, at a level that says whose
/// fault it was.
trait ConnectionEnd {
    fn log(&self, peer: &str);
}

/// A client that broke the protocol is a warning; one that hung up (a cancelled download) is
/// routine.
impl ConnectionEnd for DispatchError {
    fn log(&self, peer: &str) {
        use std::io::ErrorKind;
        match self {
            DispatchError::Io(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset
                        | ErrorKind::BrokenPipe
                        | ErrorKind::ConnectionAborted
                        | ErrorKind::UnexpectedEof
                ) =>
            {
                tracing::debug!(%peer, error = %e, "client went away");
            }
            DispatchError::Body(e) => tracing::warn!(%peer, error = %e, "response body failed mid-way"),
            other => tracing::warn!(%peer, error = %other, "client connection ended in an error"),
        }
    }
}

/// A handshake a client failed (an unknown CA, no common protocol) is the client's fault.
impl ConnectionEnd for TlsError<std::io::Error, DispatchError> {
    fn log(&self, peer: &str) {
        match self {
            TlsError::Timeout => tracing::debug!(%peer, "TLS handshake timed out"),
            TlsError::Tls(e) => tracing::warn!(%peer, error = %e, "TLS handshake failed"),
            TlsError::Service(e) => e.log(peer),
        }
    }
}

/// Drops actix-http's dispatcher ERROR events from the log output: [`log_connection_end`]
/// logs the same ends with the peer and the right level.
pub fn log_filter(metadata: &tracing::Metadata<'_>) -> bool {
    !(metadata.target() == DISPATCHER_TARGET && *metadata.level() == tracing::Level::ERROR)
}
