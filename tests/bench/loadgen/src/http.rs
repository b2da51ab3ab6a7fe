//! Just enough HTTP/1.1 for a keep-alive GET client: `http://` URLs, the request, and
//! a response parser (status line, headers, body by `Content-Length`, chunked, or up to
//! the end of the connection).

use std::fmt;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
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
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("`{url}`: only http:// URLs are supported"))?;
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'?' => (&rest[..i], format!("/{}", &rest[i..])),
            Some(i) => (&rest[..i], rest[i..].to_owned()),
            None => (rest, "/".to_owned()),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("`{url}`: expected http://host[:port]/path"));
        }
        let authority = match authority.rsplit_once(':') {
            Some((host, port)) => {
                if host.is_empty() || port.parse::<u16>().is_err() {
                    return Err(format!("`{url}`: expected http://host[:port]/path"));
                }
                authority.to_owned()
            }
            None => format!("{authority}:80"),
        };
        Ok(Self { authority, target })
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority, self.target)
    }
}

/// The bytes of a keep-alive `GET` with an optional bearer token.
pub fn get_request(url: &Url, bearer: Option<&str>) -> Vec<u8> {
    let mut req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nUser-Agent: coffer-loadgen\r\n",
        url.target, url.authority
    );
    if let Some(token) = bearer {
        req.push_str("Authorization: Bearer ");
        req.push_str(token);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req.into_bytes()
}

/// What the client needs of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Bytes of the (de-chunked) body.
    pub body_len: usize,
    /// The server will close the connection after this response.
    pub close: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    BadStatusLine(String),
    BadHeader(String),
    BadContentLength(String),
    BadChunk(String),
    /// The head did not end within [`MAX_HEAD`] bytes.
    HeadTooLarge,
    /// The connection ended before the response did.
    Truncated,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadStatusLine(l) => write!(f, "bad status line `{l}`"),
            Self::BadHeader(h) => write!(f, "bad header line `{h}`"),
            Self::BadContentLength(v) => write!(f, "bad Content-Length `{v}`"),
            Self::BadChunk(c) => write!(f, "bad chunk size line `{c}`"),
            Self::HeadTooLarge => write!(f, "response head larger than {MAX_HEAD} bytes"),
            Self::Truncated => write!(f, "connection closed in the middle of a response"),
        }
    }
}

/// The largest response head accepted.
pub const MAX_HEAD: usize = 64 * 1024;

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

enum Framing {
    Length(usize),
    Chunked,
    /// Up to the end of the connection.
    Close,
}

/// Parses one response at the start of `buf`. `Ok(None)`: more bytes are needed.
/// `Ok(Some((response, used)))`: `used` bytes made the response. `eof`: the connection
/// has ended, so nothing more will come.
///
/// # Errors
/// A malformed response, or one cut short by the end of the connection.
pub fn parse_response(buf: &[u8], eof: bool) -> Result<Option<(Response, usize)>, ParseError> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            return Err(ParseError::HeadTooLarge);
        }
        return if eof && !buf.is_empty() {
            Err(ParseError::Truncated)
        } else {
            Ok(None)
        };
    };
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status = parts
        .next()
        .filter(|s| s.len() == 3)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| version.starts_with("HTTP/1."))
        .ok_or_else(|| ParseError::BadStatusLine(status_line.to_owned()))?;
    let mut close = version == "HTTP/1.0";
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| ParseError::BadHeader(line.to_owned()))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse::<usize>()
                .map_err(|_| ParseError::BadContentLength(value.to_owned()))?;
            if length.is_some_and(|m| m != n) {
                return Err(ParseError::BadContentLength(value.to_owned()));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    close = false;
                }
            }
        }
    }
    let body_start = head_end + 4;
    // No body: 1xx, 204 and 304 (a GET client never sees a HEAD response).
    let framing = if status < 200 || status == 204 || status == 304 {
        Framing::Length(0)
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::Close
    };
    let body = &buf[body_start..];
    let done = |body_len, used| {
        Ok(Some((
            Response {
                status,
                body_len,
                close,
            },
            used,
        )))
    };
    match framing {
        Framing::Length(n) if body.len() >= n => done(n, body_start + n),
        Framing::Length(_) => incomplete(eof),
        Framing::Close if eof => Ok(Some((
            Response {
                status,
                body_len: body.len(),
                close: true,
            },
            buf.len(),
        ))),
        Framing::Close => Ok(None),
        Framing::Chunked => match parse_chunked(body)? {
            Some((body_len, used)) => done(body_len, body_start + used),
            None => incomplete(eof),
        },
    }
}

fn incomplete<T>(eof: bool) -> Result<Option<T>, ParseError> {
    if eof {
        Err(ParseError::Truncated)
    } else {
        Ok(None)
    }
}

/// A chunked body at the start of `buf`: `Some((decoded length, bytes used))` once the
/// last chunk and the trailers have arrived.
fn parse_chunked(buf: &[u8]) -> Result<Option<(usize, usize)>, ParseError> {
    let mut at = 0;
    let mut body_len = 0usize;
    loop {
        let Some(line_end) = find(&buf[at..], b"\r\n") else {
            return Ok(None);
        };
        let line = String::from_utf8_lossy(&buf[at..at + line_end]);
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| ParseError::BadChunk(line.clone().into_owned()))?;
        at += line_end + 2;
        if size == 0 {
            // Trailers, then an empty line.
            loop {
                let Some(end) = find(&buf[at..], b"\r\n") else {
                    return Ok(None);
                };
                at += end + 2;
                if end == 0 {
                    return Ok(Some((body_len, at)));
                }
            }
        }
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        if &buf[at + size..at + size + 2] != b"\r\n" {
            return Err(ParseError::BadChunk(format!(
                "chunk of {size} bytes not followed by CRLF"
            )));
        }
        body_len += size;
        at += size + 2;
    }
}

/// Why a request failed.
#[derive(Debug)]
pub enum RequestError {
    Io(std::io::Error),
    Parse(ParseError),
    Timeout,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "{e}"),
            Self::Parse(e) => write!(f, "{e}"),
            Self::Timeout => write!(f, "timed out"),
        }
    }
}

/// One keep-alive connection.
pub struct Connection {
    /// `host:port` it is connected to.
    pub authority: String,
    stream: TcpStream,
    buf: Vec<u8>,
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
        Ok(Self {
            authority: authority.to_owned(),
            stream,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// Sends `request` and reads its whole response.
    ///
    /// # Errors
    /// I/O errors and malformed responses; the connection should be dropped then.
    pub async fn send(&mut self, request: &[u8]) -> Result<Response, RequestError> {
        self.stream
            .write_all(request)
            .await
            .map_err(RequestError::Io)?;
        loop {
            if let Some((response, used)) =
                parse_response(&self.buf, false).map_err(RequestError::Parse)?
            {
                self.buf.drain(..used);
                return Ok(response);
            }
            self.buf.reserve(64 * 1024);
            let n = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(RequestError::Io)?;
            if n == 0 {
                let (response, used) = parse_response(&self.buf, true)
                    .map_err(RequestError::Parse)?
                    .ok_or(RequestError::Parse(ParseError::Truncated))?;
                self.buf.drain(..used);
                return Ok(response);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(buf: &[u8]) -> (Response, usize) {
        parse_response(buf, false).unwrap().unwrap()
    }

    #[test]
    fn content_length_body() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(
            ok(r),
            (
                Response {
                    status: 200,
                    body_len: 2,
                    close: false
                },
                r.len()
            )
        );
    }

    #[test]
    fn incomplete_until_every_byte_is_there() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
        for cut in 0..r.len() {
            assert_eq!(parse_response(&r[..cut], false), Ok(None), "cut at {cut}");
        }
        assert_eq!(ok(r).1, r.len());
        // The end of the connection before the end of the body is an error.
        assert_eq!(
            parse_response(&r[..r.len() - 1], true),
            Err(ParseError::Truncated)
        );
    }

    #[test]
    fn leaves_the_next_response_alone() {
        let one = b"HTTP/1.1 204 No Content\r\nx: y\r\n\r\n".as_slice();
        let two = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 3\r\n\r\nnop".as_slice();
        let both = [one, two].concat();
        let (first, used) = ok(&both);
        assert_eq!((first.status, first.body_len, used), (204, 0, one.len()));
        let (second, used) = ok(&both[used..]);
        assert_eq!((second.status, second.body_len, used), (401, 3, two.len()));
    }

    #[test]
    fn chunked_body_with_extensions_and_trailers() {
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                  5;ext=1\r\nhello\r\n\
                  B\r\n, world 123\r\n\
                  0\r\nx-trailer: 1\r\n\r\n";
        assert_eq!(
            ok(r),
            (
                Response {
                    status: 200,
                    body_len: 16,
                    close: false
                },
                r.len()
            )
        );
        for cut in 0..r.len() {
            assert_eq!(parse_response(&r[..cut], false), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn chunked_wins_over_content_length() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(ok(r).0.body_len, 0);
        assert_eq!(ok(r).1, r.len());
    }

    #[test]
    fn bad_chunks_are_errors() {
        let r = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n";
        assert!(matches!(
            parse_response(r, false),
            Err(ParseError::BadChunk(_))
        ));
        let r = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nabcd\r\n";
        assert!(matches!(
            parse_response(r, false),
            Err(ParseError::BadChunk(_))
        ));
    }

    #[test]
    fn connection_close_and_http_1_0() {
        let r =
            b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        assert!(ok(r).0.close);
        let r = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert!(ok(r).0.close);
        let r = b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n";
        assert!(!ok(r).0.close);
    }

    #[test]
    fn body_up_to_the_end_of_the_connection() {
        let r = b"HTTP/1.1 200 OK\r\n\r\nsome bytes";
        assert_eq!(parse_response(r, false), Ok(None));
        let (resp, used) = parse_response(r, true).unwrap().unwrap();
        assert_eq!((resp.body_len, resp.close, used), (10, true, r.len()));
    }

    #[test]
    fn malformed_heads() {
        for bad in [
            b"HTTP/1.1 2000 OK\r\n\r\n".as_slice(),
            b"HTTP/2 200 OK\r\n\r\n",
            b"garbage\r\n\r\n",
        ] {
            assert!(matches!(
                parse_response(bad, false),
                Err(ParseError::BadStatusLine(_))
            ));
        }
        assert!(matches!(
            parse_response(b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", false),
            Err(ParseError::BadHeader(_))
        ));
        assert!(matches!(
            parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n", false),
            Err(ParseError::BadContentLength(_))
        ));
        assert_eq!(
            parse_response(&vec![b'a'; MAX_HEAD + 1], false),
            Err(ParseError::HeadTooLarge)
        );
    }

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
    fn request_bytes() {
        let u = Url::parse("http://127.0.0.1:9/api/audit?limit=50").unwrap();
        let req = String::from_utf8(get_request(&u, Some("tok"))).unwrap();
        assert!(req.starts_with("GET /api/audit?limit=50 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n"));
        assert!(req.contains("\r\nAuthorization: Bearer tok\r\n"));
        assert!(req.ends_with("\r\n\r\n"));
    }
}
