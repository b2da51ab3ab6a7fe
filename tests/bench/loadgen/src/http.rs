//! The client side of the load: `http://` URLs, and keep-alive connections that send a
//! `GET` and read its whole response, through hyper's HTTP/1.1 connection API (one
//! connection per worker, so the pool's size is exactly `--connections`).

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONNECTION, HOST, USER_AGENT};
use http::{Request, Uri, Version};
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A parsed `http://host[:port]/path?query` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `host:port`, to connect to and to send as `Host`.
    pub authority: String,
    /// Path and query, at least `/`.
    pub target: String,
}

impl Url {
    /// Parses an `http://` URL (no TLS; the default port is 80).
    ///
    /// # Errors
    /// Another scheme, an empty host, or a port that is not a number.
    pub fn parse(url: &str) -> Result<Self, String> {
        let malformed = || format!("`{url}`: expected http://host[:port]/path");
        let uri: Uri = url.parse().map_err(|_| malformed())?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("`{url}`: only http:// URLs are supported"));
        }
        let authority = uri.authority().ok_or_else(malformed)?;
        if authority.host().is_empty() || authority.as_str().contains('@') {
            return Err(malformed());
        }
        let port = match authority.as_str().rsplit_once(':') {
            Some((_, port)) => port.parse::<u16>().map_err(|_| malformed())?,
            None => 80,
        };
        let target = match uri.query() {
            Some(query) => format!("{}?{query}", uri.path()),
            None => uri.path().to_owned(),
        };
        Ok(Self {
            authority: format!("{}:{port}", authority.host()),
            target,
        })
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority, self.target)
    }
}

/// A keep-alive `GET` of `url` with an optional bearer token.
///
/// # Panics
/// Never for a parsed [`Url`] and a token of header-safe characters.
pub fn get_request(url: &Url, bearer: Option<&str>) -> Request<Empty<Bytes>> {
    let mut req = Request::get(url.target.as_str())
        .header(HOST, url.authority.as_str())
        .header(ACCEPT, "application/json")
        .header(USER_AGENT, "coffer-loadgen");
    if let Some(token) = bearer {
        req = req.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    req.body(Empty::new()).expect("a GET of a parsed URL")
}

/// What the client needs of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Bytes of the (de-chunked) body.
    pub body_len: usize,
    /// The server closes the connection after it.
    pub close: bool,
}

/// Why a request failed.
#[derive(Debug)]
pub enum RequestError {
    Io(std::io::Error),
    Http(hyper::Error),
    Timeout,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "{e}"),
            Self::Http(e) => write!(f, "{e}"),
            Self::Timeout => write!(f, "timed out"),
        }
    }
}

/// One keep-alive connection.
pub struct Connection {
    /// `host:port` it is connected to.
    pub authority: String,
    sender: SendRequest<Empty<Bytes>>,
}

impl Connection {
    /// Connects to `authority` (`host:port`).
    ///
    /// # Errors
    /// When the connection cannot be made within `timeout`.
    pub async fn open(authority: &str, timeout: Duration) -> Result<Self, RequestError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(authority))
            .await
            .map_err(|_| RequestError::Timeout)?
            .map_err(RequestError::Io)?;
        stream.set_nodelay(true).map_err(RequestError::Io)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(RequestError::Http)?;
        // The connection's I/O runs beside the requests until either side closes it.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self {
            authority: authority.to_owned(),
            sender,
        })
    }

    /// Sends `request` and reads its whole response.
    ///
    /// # Errors
    /// I/O and protocol errors; the connection should be dropped then.
    pub async fn send(&mut self, request: Request<Empty<Bytes>>) -> Result<Response, RequestError> {
        self.sender.ready().await.map_err(RequestError::Http)?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(RequestError::Http)?;
        let status = response.status().as_u16();
        let close = response.version() < Version::HTTP_11
            || response
                .headers()
                .get(CONNECTION)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(RequestError::Http)?
            .to_bytes();
        Ok(Response {
            status,
            body_len: body.len(),
            close,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("http://127.0.0.1:8001/api/backups?limit=50").unwrap();
        assert_eq!(u.authority, "127.0.0.1:8001");
        assert_eq!(u.target, "/api/backups?limit=50");
        assert_eq!(u.to_string(), "http://127.0.0.1:8001/api/backups?limit=50");
        let u = Url::parse("http://localhost").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.target.as_str()),
            ("localhost:80", "/")
        );
        let u = Url::parse("http://h:1?x=1").unwrap();
        assert_eq!((u.authority.as_str(), u.target.as_str()), ("h:1", "/?x=1"));
        assert!(Url::parse("https://h/").is_err());
        assert!(Url::parse("http://h:port/").is_err());
        assert!(Url::parse("http:///x").is_err());
    }

    #[test]
    fn request_head() {
        let u = Url::parse("http://127.0.0.1:9/api/audit?limit=50").unwrap();
        let req = get_request(&u, Some("tok"));
        assert_eq!(req.method(), http::Method::GET);
        assert_eq!(req.uri(), "/api/audit?limit=50");
        assert_eq!(req.headers()[HOST], "127.0.0.1:9");
        assert_eq!(req.headers()[AUTHORIZATION], "Bearer tok");
        assert!(get_request(&u, None).headers().get(AUTHORIZATION).is_none());
    }

    /// A whole exchange against a real server: chunked and sized bodies, keep-alive,
    /// and `Connection: close` seen.
    #[tokio::test]
    async fn a_connection_reads_whole_responses_and_sees_a_close() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let responses: [&[u8]; 2] = [
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-Trailer: y\r\n\r\n",
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbye",
            ];
            for response in responses {
                let n = socket.read(&mut buf).await.unwrap();
                assert!(buf[..n].starts_with(b"GET /x HTTP/1.1\r\n"));
                socket.write_all(response).await.unwrap();
            }
        });
        let url = Url::parse(&format!("http://{addr}/x")).unwrap();
        let mut conn = Connection::open(&url.authority, Duration::from_secs(5))
            .await
            .unwrap();
        let first = conn.send(get_request(&url, None)).await.unwrap();
        assert_eq!(
            first,
            Response {
                status: 200,
                body_len: 5,
                close: false
            }
        );
        let second = conn.send(get_request(&url, None)).await.unwrap();
        assert_eq!(
            second,
            Response {
                status: 503,
                body_len: 3,
                close: true
            }
        );
    }
}
