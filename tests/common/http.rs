//! A tiny HTTP/1.1 client over tokio's TcpStream for the HTTP API tests (one request per
//! connection, `Connection: close`), so the tests need no HTTP client crate.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request; `headers` are extra header lines (`("Authorization", "Bearer x")`).
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    s.write_all(&bytes).await.expect("write request");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("response within 10 s")
        .expect("read response");
    parse(&buf)
}

pub async fn post_json(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> HttpResponse {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    request(addr, "POST", path, &headers, body.as_bytes()).await
}

fn parse(buf: &[u8]) -> HttpResponse {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = buf[end + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(nl) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&rest[..nl])
                    .split(';')
                    .next()
                    .unwrap_or("0")
                    .trim(),
                16,
            )
            .unwrap_or(0);
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[nl + 2..nl + 2 + size]);
            rest = &rest[nl + 2 + size + 2..];
        }
        body = out;
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

/// `application/x-www-form-urlencoded` encoding of form fields.
pub fn form_encode(fields: &[(&str, &str)]) -> String {
    fn enc(s: &str) -> String {
        let mut out = String::new();
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                out.push(b as char);
            } else if b == b' ' {
                out.push('+');
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A browser-like client for the web console: keeps the session cookie.
#[derive(Clone)]
pub struct WebClient {
    pub addr: SocketAddr,
    pub cookie: Option<String>,
}

impl WebClient {
    pub fn new(addr: SocketAddr) -> Self {
        WebClient { addr, cookie: None }
    }

    fn take_cookie(&mut self, r: &HttpResponse) {
        for (k, v) in &r.headers {
            if k.eq_ignore_ascii_case("set-cookie") && v.starts_with("readgate_session=") {
                let pair = v.split(';').next().unwrap_or("");
                self.cookie = pair
                    .split_once('=')
                    .filter(|(_, val)| !val.is_empty())
                    .map(|_| pair.to_string());
            }
        }
    }

    pub async fn get(&mut self, path: &str) -> HttpResponse {
        let mut headers = Vec::new();
        if let Some(c) = &self.cookie {
            headers.push(("Cookie", c.as_str()));
        }
        let r = request(self.addr, "GET", path, &headers, b"").await;
        self.take_cookie(&r);
        r
    }

    pub async fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> HttpResponse {
        let body = form_encode(fields);
        let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
        if let Some(c) = &self.cookie {
            headers.push(("Cookie", c.as_str()));
        }
        let r = request(self.addr, "POST", path, &headers, body.as_bytes()).await;
        self.take_cookie(&r);
        r
    }

    pub async fn login(&mut self, user: &str, password: &str) -> HttpResponse {
        self.post_form("/login", &[("user", user), ("password", password)])
            .await
    }

    /// The CSRF token of the session, read from a page's forms.
    pub async fn csrf(&mut self) -> String {
        let r = self.get("/").await;
        let body = String::from_utf8_lossy(&r.body).into_owned();
        let marker = "name=csrf value=\"";
        let start = body.find(marker).expect("a csrf field on the page") + marker.len();
        body[start..]
            .split('"')
            .next()
            .unwrap_or_default()
            .to_string()
    }
}
