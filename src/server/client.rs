//! A minimal HTTP/1.1 GET for `gitmoor status --url http://host:port[/prefix]`: plain HTTP on a
//! trusted network (loopback, or through the Nginx in front of it). No TLS: use curl for that.

use anyhow::{bail, Context};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `(host:port, path prefix)` from `http://host[:port][/prefix]`.
pub fn parse_url(url: &str) -> anyhow::Result<(String, String)> {
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("{url}: only http:// URLs are supported here (use curl for https)");
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') {
        bail!("{url}: give http://host:port");
    }
    let has_port = match authority.rfind(':') {
        Some(i) => !authority.ends_with(']') && authority[i + 1..].parse::<u16>().is_ok(),
        None => false,
    };
    let authority = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((authority, path.to_string()))
}

/// GETs `path` under `url`; returns the status code and the body.
pub async fn get(url: &str, path: &str, timeout: Duration) -> anyhow::Result<(u16, String)> {
    let (authority, prefix) = parse_url(url)?;
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(&authority)
            .await
            .with_context(|| format!("cannot connect to {authority}"))?;
        let host = authority.clone();
        let req = format!(
            "GET {prefix}{path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nConnection: close\r\nUser-Agent: gitmoor/{}\r\n\r\n",
            env!("CARGO_PKG_VERSION")
        );
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        s.take(16 << 20).read_to_end(&mut buf).await?;
        parse_response(&buf)
    };
    tokio::time::timeout(timeout, fut)
        .await
        .with_context(|| format!("{url} did not answer within {} s", timeout.as_secs()))?
}

fn parse_response(buf: &[u8]) -> anyhow::Result<(u16, String)> {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("not an HTTP response")?;
    let head = String::from_utf8_lossy(&buf[..split]);
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .context("not an HTTP response")?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let raw = &buf[split + 4..];
    let body = if chunked { dechunk(raw)? } else { raw.to_vec() };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut raw: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("bad chunked body")?;
        let size_text = String::from_utf8_lossy(&raw[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .context("bad chunk size")?;
        raw = &raw[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        // A size near usize::MAX must be an error, not an overflow.
        let need = size.checked_add(2).context("bad chunk size")?;
        if raw.len() < need {
            bail!("truncated chunked body");
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[need..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_an_address_and_a_prefix() {
        let p = |u: &str| parse_url(u).unwrap();
        assert_eq!(
            p("http://127.0.0.1:9090"),
            ("127.0.0.1:9090".into(), "".into())
        );
        assert_eq!(
            p("http://localhost:9090/"),
            ("localhost:9090".into(), "".into())
        );
        assert_eq!(
            p("http://host/gitmoor/"),
            ("host:80".into(), "/gitmoor".into())
        );
        assert_eq!(p("http://[::1]:9090"), ("[::1]:9090".into(), "".into()));
        assert!(parse_url("https://host").is_err());
        assert!(parse_url("http://user:pw@host").is_err());
    }

    #[test]
    fn responses_plain_and_chunked() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").unwrap();
        assert_eq!(r, (200, "ok".into()));
        let r = parse_response(
            b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r, (503, "abcde".into()));
        for bad in [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nab"[..],
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nab\r\n"[..],
        ] {
            assert!(parse_response(bad).is_err());
        }
    }
}
