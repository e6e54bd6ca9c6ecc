//! Reading HTTP/1.1 request heads off a socket, for the test servers and the proxy.

use std::io::Read;

/// A request head: the request line and the headers, and its raw bytes.
#[derive(Clone, Debug)]
pub struct Head {
    /// `GET`, `PUT`, ...
    pub method: String,
    /// The request target as sent (`/v2/x/blobs/uploads/?digest=…`).
    pub target: String,
    /// The headers in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The head's bytes, up to and including the blank line.
    pub raw: Vec<u8>,
}

impl Head {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body's length by `Content-Length` (0 without one).
    pub fn content_length(&self) -> u64 {
        self.header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// Reads the next request head from `conn`; bytes read past it stay in `buf`. `None`
/// at the end of the stream, on an error, or when the bytes are not HTTP (a TLS
/// handshake sent to a plain-HTTP port: hanging up is what such a server does).
pub fn read_head(conn: &mut impl Read, buf: &mut Vec<u8>) -> Option<Head> {
    let mut chunk = vec![0u8; 64 << 10];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.first().is_some_and(|b| !b.is_ascii_uppercase()) {
            return None;
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let raw: Vec<u8> = buf.drain(..end).collect();
    let text = String::from_utf8_lossy(&raw).to_string();
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_string();
    let target = first.next().unwrap_or("").to_string();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Some(Head {
        method,
        target,
        headers,
        raw,
    })
}

/// Reads until `buf` holds at least `len` bytes; false if the stream ends first.
pub fn fill(conn: &mut impl Read, buf: &mut Vec<u8>, len: usize) -> bool {
    let mut chunk = vec![0u8; 64 << 10];
    while buf.len() < len {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    true
}
