//! The HTTP/1.1 server around the app: what actix-web's `HttpServer` assembles, assembled here
//! for one reason: a connection that ends in an error is logged here, with its peer, at a level
//! that says whose fault it was. actix-http's dispatcher logs such ends itself as ERROR with no
//! address, so a client sending garbage read like a server fault nobody could trace.

use std::net::SocketAddr;
use std::time::Duration;

use actix_http::{HttpService, error::DispatchError};
use actix_server::Server;
use actix_service::{Service, apply_fn_factory, map_config};
use actix_web::dev::AppConfig;
use actix_web::middleware::{Condition, from_fn};
use actix_web::{App, web};

use crate::state::AppState;

/// actix-http's own logger of connection ends, silenced in the log output (`log_filter`) since
/// [`log_connection_end`] logs every such end, with the peer.
const DISPATCHER_TARGET: &str = "actix_http::h1::dispatcher";

/// How connections are timed.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionTimeouts {
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
/// with the addresses it got (either may ask for port 0). An error names the address it concerns.
pub fn bind(
    listen: Addresses,
    state: web::Data<AppState>,
    timeouts: ConnectionTimeouts,
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
    let mut builder = Server::build().shutdown_timeout(timeouts.shutdown_grace.as_secs());
    let shutdown = builder.graceful_shutdown_signal();
    let routes: [(&str, Option<std::net::TcpListener>, RouteTable); 2] = [
        ("pkgmirror", Some(main), crate::routes::configure),
        ("metrics", metrics, crate::http::configure_metrics_listener),
    ];
    for (name, listener, configure) in routes {
        let Some(listener) = listener else { continue };
        let addr = listener.local_addr().map_err(|e| (listen.main, e))?;
        let state = state.clone();
        let shutdown = shutdown.clone();
        builder = builder
            .listen(name, listener, move || {
                let shutdown = shutdown.clone();
                let app = App::new()
                    .app_data(state.clone())
                    .wrap(Condition::new(!state.anonymous_read, from_fn(super::read_access)))
                    .wrap(from_fn(super::body_deadline))
                    .wrap(from_fn(super::html_errors))
                    .wrap(from_fn(super::access_log))
                    .wrap(from_fn(super::measure))
                    .configure(configure);
                // The host stands in for requests without a `Host` header, as `HttpServer` sets it.
                // actix-web builds an `AppConfig` only through this hidden constructor; Cargo.lock pins it.
                let app_config = AppConfig::__priv_test_new(false, addr.to_string(), addr);
                let http = HttpService::build()
                    // Idle keep-alive connections close at once on shutdown instead of holding it up.
                    .graceful_shutdown_signal(move || {
                        let shutdown = shutdown.clone();
                        async move { shutdown.notified().await }
                    })
                    .client_request_timeout(timeouts.request_head)
                    .client_disconnect_timeout(timeouts.disconnect)
                    .local_addr(addr)
                    .h1(map_config(app, move |()| app_config.clone()))
                    .tcp();
                apply_fn_factory(http, |io: tokio::net::TcpStream, connection| {
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
                            log_connection_end(peer, &e);
                        }
                        Ok::<(), DispatchError>(())
                    }
                })
            })
            .map_err(|e| (addr, e))?;
    }
    Ok((builder.run(), bound))
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

/// Logs a connection that ended in an error, with its peer: a client that broke the protocol is a
/// warning; one that hung up (a cancelled download) is routine.
fn log_connection_end(peer: Option<SocketAddr>, error: &DispatchError) {
    use std::io::ErrorKind;
    let peer = peer.map_or_else(|| "unknown".to_owned(), |p| p.to_string());
    match error {
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

/// Drops actix-http's dispatcher ERROR events from the log output: [`log_connection_end`]
/// logs the same ends with the peer and the right level.
pub fn log_filter(metadata: &tracing::Metadata<'_>) -> bool {
    !(metadata.target() == DISPATCHER_TARGET && *metadata.level() == tracing::Level::ERROR)
}
