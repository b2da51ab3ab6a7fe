//! Binding and running the HTTP server with graceful shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use poem::listener::{Acceptor, Listener, TcpAcceptor, TcpListener};
use poem::{Endpoint, Server};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: String, reason: String },
    #[error("HTTP server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// A server whose socket is already bound, so a port in use fails before anything else
/// starts, and port 0 (tests) reports the port it got.
pub struct HttpServer {
    acceptor: TcpAcceptor,
    local_addr: SocketAddr,
}

impl HttpServer {
    /// Binds `host:port`.
    ///
    /// # Errors
    /// [`ServeError::Bind`] with the address and the reason (in use, not permitted, bad
    /// address).
    pub async fn bind(host: &str, port: u16) -> Result<Self, ServeError> {
        let addr = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let acceptor = TcpListener::bind(addr.clone())
            .into_acceptor()
            .await
            .map_err(|e| ServeError::Bind {
                addr: addr.clone(),
                reason: describe_bind_error(&e),
            })?;
        let local_addr = acceptor
            .local_addr()
            .into_iter()
            .find_map(|a| a.as_socket_addr().copied())
            .ok_or_else(|| ServeError::Bind {
                addr: addr.clone(),
                reason: "the listener has no socket address".to_owned(),
            })?;
        Ok(Self {
            acceptor,
            local_addr,
        })
    }

    #[must_use]
    pub const fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves `app` until `shutdown` completes, then lets in-flight requests finish for
    /// at most `grace`.
    ///
    /// # Errors
    /// When the server fails while running.
    pub async fn run<E>(
        self,
        app: E,
        shutdown: impl Future<Output = ()>,
        grace: Duration,
    ) -> Result<(), ServeError>
    where
        E: Endpoint + 'static,
    {
        Server::new_with_acceptor(self.acceptor)
            .idle_timeout(Duration::from_mins(2))
            .run_with_graceful_shutdown(app, shutdown, Some(grace))
            .await?;
        Ok(())
    }
}

fn describe_bind_error(err: &std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::AddrInUse => {
            "address already in use (is another Coffer or service running on it? \
             choose another with --port or server.port)"
                .to_owned()
        }
        std::io::ErrorKind::PermissionDenied => {
            "permission denied (ports below 1024 need privileges)".to_owned()
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "address not available on this machine (check server.bind)".to_owned()
        }
        _ => err.to_string(),
    }
}
