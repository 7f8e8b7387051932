//! One HTTP/1.1 request per connection, over TCP or TLS: just what Git's smart HTTP protocol
//! needs (a GET, a POST with a body known in full, a response read as a stream). No proxy, no
//! keep-alive, no compression: a fetch makes two or three requests.

use super::url::HttpUrl;
use crate::source::libgit2_setup::{CONNECT_TIMEOUT, IO_TIMEOUT};
use native_tls::TlsConnector;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};

/// A response head larger than this is not from a Git server.
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 64;

/// Why a request failed, in the terms a user fixes it by.
#[derive(Debug)]
pub(super) enum HttpError {
    /// Name resolution or TCP connection.
    Connect(String),
    /// The TLS handshake, the server's certificate above all.
    Tls(String),
    /// The server answered something that is not HTTP/1.x.
    Protocol(String),
    Io(io::Error),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Connect(m) | HttpError::Tls(m) | HttpError::Protocol(m) => f.write_str(m),
            HttpError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// A request: method, path with query, extra headers, and the whole body.
pub(super) struct Request<'a> {
    pub method: &'a str,
    pub path_and_query: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// A response whose body is read as it arrives.
pub(super) struct Response {
    pub status: u16,
    headers: Vec<(String, String)>,
    body: Body,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The media type of `Content-Type`, without parameters, lower case.
    pub fn media_type(&self) -> String {
        self.header("content-type")
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    }
}

impl Read for Response {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.body.read(buf)
    }
}

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// Sends `req` to `url`'s host and reads the response head. `tls` is used for https.
pub(super) fn send(
    url: &HttpUrl,
    tls: Option<&TlsConnector>,
    req: &Request<'_>,
) -> Result<Response, HttpError> {
    let tcp = connect(&url.host, url.port)?;
    let mut stream: Box<dyn Stream> = match (url.https, tls) {
        (true, Some(tls)) => Box::new(tls.connect(&url.host, tcp).map_err(|e| match e {
            // A blocking socket "would block" only when its timeout ran out.
            native_tls::HandshakeError::WouldBlock(_) => HttpError::Connect(format!(
                "{} did not answer the TLS handshake within {} s",
                url.authority(),
                IO_TIMEOUT.as_secs()
            )),
            // The certificate is the user's to fix (ca_file); anything else is the server or
            // the port (plain http on an https URL, an old TLS version).
            native_tls::HandshakeError::Failure(e) => {
                let detail = e.to_string();
                let message = format!("TLS with {}: {detail}", url.authority());
                if detail.contains("certificate") {
                    HttpError::Tls(message)
                } else {
                    HttpError::Connect(message)
                }
            }
        })?),
        (true, None) => {
            return Err(HttpError::Tls(
                "no TLS set-up for an https URL (internal error)".to_string(),
            ))
        }
        (false, _) => Box::new(tcp),
    };
    let head = request_head(url, req);
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(req.body))
        .and_then(|()| stream.flush())
        .map_err(|e| HttpError::Io(said_timeout(e)))?;
    read_response(stream)
}

fn connect(host: &str, port: u16) -> Result<TcpStream, HttpError> {
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| HttpError::Connect(format!("cannot resolve {host}: {e}")))?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(tcp) => {
                tcp.set_read_timeout(Some(IO_TIMEOUT))
                    .and_then(|()| tcp.set_write_timeout(Some(IO_TIMEOUT)))
                    .map_err(HttpError::Io)?;
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Err(e) => last = Some(format!("cannot connect to {addr}: {e}")),
        }
    }
    Err(HttpError::Connect(last.unwrap_or_else(|| {
        format!("{host} resolves to no address")
    })))
}

fn request_head(url: &HttpUrl, req: &Request<'_>) -> String {
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        req.method,
        req.path_and_query,
        url.host_header()
    );
    for (name, value) in req.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if req.method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", req.body.len()));
    }
    head.push_str("\r\n");
    head
}

fn read_response(mut stream: Box<dyn Stream>) -> Result<Response, HttpError> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream
            .read(&mut chunk)
            .map_err(|e| HttpError::Io(said_timeout(e)))?;
        if n == 0 {
            return Err(HttpError::Protocol(
                "the server closed the connection before a complete HTTP response head".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut headers);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let status = parsed.code.unwrap_or_default();
                let headers: Vec<(String, String)> = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).trim().to_string(),
                        )
                    })
                    .collect();
                let rest = buf.split_off(head_len);
                let body = Body::new(&headers, Conn::new(stream, rest))?;
                return Ok(Response {
                    status,
                    headers,
                    body,
                });
            }
            Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => continue,
            Ok(httparse::Status::Partial) => {
                return Err(HttpError::Protocol(format!(
                    "the HTTP response head is over {MAX_HEAD} bytes"
                )))
            }
            Err(e) => {
                return Err(HttpError::Protocol(format!(
                    "the server's answer is not HTTP/1.x ({e})"
                )))
            }
        }
    }
}

/// The connection after the response head: the bytes already read first.
struct Conn {
    stream: Box<dyn Stream>,
    pending: Vec<u8>,
    pos: usize,
}

impl Conn {
    fn new(stream: Box<dyn Stream>, pending: Vec<u8>) -> Conn {
        Conn {
            stream,
            pending,
            pos: 0,
        }
    }

    /// One line up to CRLF (chunked framing), without it.
    fn read_line(&mut self) -> io::Result<String> {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            if self.read(&mut byte)? == 0 {
                return Err(truncated());
            }
            if byte[0] == b'\n' {
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(String::from_utf8_lossy(&line).into_owned());
            }
            if line.len() > 4096 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a chunk-size line over 4096 bytes",
                ));
            }
            line.push(byte[0]);
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.pending.len() {
            let n = buf.len().min(self.pending.len() - self.pos);
            buf[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        self.stream.read(buf).map_err(said_timeout)
    }
}

/// A blocking socket's read or write "would block" only when its timeout ran out: said so.
fn said_timeout(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "no answer from the server within {} s",
                IO_TIMEOUT.as_secs()
            ),
        ),
        _ => e,
    }
}

fn truncated() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the server closed the connection in the middle of the response",
    )
}

/// How the body's end is known.
enum Body {
    Length { conn: Conn, left: u64 },
    Chunked { conn: Conn, left: u64, done: bool },
    Close(Conn),
}

impl Body {
    fn new(headers: &[(String, String)], conn: Conn) -> Result<Body, HttpError> {
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        if let Some(te) = get("transfer-encoding") {
            // Only plain chunked: a compressed body would reach libgit2 undecoded.
            if te.trim().eq_ignore_ascii_case("chunked") {
                return Ok(Body::Chunked {
                    conn,
                    left: 0,
                    done: false,
                });
            }
            return Err(HttpError::Protocol(format!(
                "unsupported Transfer-Encoding: {te}"
            )));
        }
        match get("content-length") {
            Some(len) => {
                let left = len
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| len.parse().ok())
                    .flatten()
                    .ok_or_else(|| {
                        HttpError::Protocol(format!("a Content-Length that is not a number: {len}"))
                    })?;
                Ok(Body::Length { conn, left })
            }
            None => Ok(Body::Close(conn)),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Body::Close(conn) => conn.read(buf),
            Body::Length { conn, left } => {
                if *left == 0 || buf.is_empty() {
                    return Ok(0);
                }
                let want = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                let n = conn.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(truncated());
                }
                *left -= n as u64;
                Ok(n)
            }
            Body::Chunked { conn, left, done } => {
                if *done || buf.is_empty() {
                    return Ok(0);
                }
                if *left == 0 {
                    let line = conn.read_line()?;
                    let size = line.split(';').next().unwrap_or_default().trim();
                    let hex = !size.is_empty() && size.bytes().all(|b| b.is_ascii_hexdigit());
                    *left = hex
                        .then(|| u64::from_str_radix(size, 16).ok())
                        .flatten()
                        .ok_or_else(|| {
                            io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!("a chunk size that is not hexadecimal: {size:?}"),
                            )
                        })?;
                    if *left == 0 {
                        // Trailer fields, then the empty line.
                        while !conn.read_line()?.is_empty() {}
                        *done = true;
                        return Ok(0);
                    }
                }
                let want = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                let n = conn.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(truncated());
                }
                *left -= n as u64;
                if *left == 0 && !conn.read_line()?.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a chunk not followed by CRLF",
                    ));
                }
                Ok(n)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(headers: &[(&str, &str)], bytes: &[u8]) -> io::Result<Vec<u8>> {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let conn = Conn::new(Box::new(io::Cursor::new(Vec::new())), bytes.to_vec());
        let mut body = Body::new(&headers, conn).map_err(|e| io::Error::other(e.to_string()))?;
        let mut out = Vec::new();
        let mut buf = [0u8; 3];
        loop {
            let n = body.read(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn chunked_bodies_are_decoded_across_small_reads() {
        let wire = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nX-Trailer: 1\r\n\r\n";
        let got = body(&[("Transfer-Encoding", "chunked")], wire).unwrap();
        assert_eq!(got, b"Wikipedia");
    }

    #[test]
    fn a_chunked_body_cut_short_is_an_error_not_an_end() {
        let err = body(&[("Transfer-Encoding", "chunked")], b"a\r\nshort").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let err = body(&[("Transfer-Encoding", "chunked")], b"zz\r\n").unwrap_err();
        assert!(err.to_string().contains("not hexadecimal"), "{err}");
    }

    #[test]
    fn content_length_bounds_the_body_and_a_short_one_is_an_error() {
        let got = body(&[("Content-Length", "5")], b"helloEXTRA").unwrap();
        assert_eq!(got, b"hello");
        let err = body(&[("Content-Length", "10")], b"hello").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn without_length_the_body_runs_to_the_close() {
        let got = body(&[], b"all of it").unwrap();
        assert_eq!(got, b"all of it");
    }

    #[test]
    fn an_unknown_transfer_encoding_is_refused() {
        assert!(body(&[("Transfer-Encoding", "gzip")], b"").is_err());
        assert!(body(&[("Transfer-Encoding", "gzip, chunked")], b"").is_err());
        assert!(body(&[("Content-Length", "+5")], b"hello").is_err());
        assert!(body(
            &[("Transfer-Encoding", "chunked")],
            b"+5\r\nhello\r\n0\r\n\r\n"
        )
        .is_err());
    }
}
