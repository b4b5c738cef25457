//! HTTP/1.1 requests with extra headers (an `Authorization: Bearer …` above all), for tests
//! of the real binary's locked-down API. Answers are read to EOF (`Connection: close`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The token the tests give the engine (`--api-token` / `COMPLAINTFLOW_API_TOKEN`).
pub const TEST_TOKEN: &str = "test-token-0123456789abcdef";

/// A status and a body.
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Head (status line and headers), lower-cased.
    pub head: String,
    /// Body (not de-chunked: the engine answers with a Content-Length).
    pub body: String,
}

impl Reply {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
    /// The `error` string of a JSON error answer (empty when there is none).
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// `method path` with `headers` and a JSON `body`; `None` when nothing answers.
pub fn send(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<Reply> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let raw = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some(Reply {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_string(),
    })
}

/// `POST /api/retrain {"path": path}` with `Authorization: Bearer token` when given.
pub fn post_retrain(addr: &str, token: Option<&str>, path: &str) -> Option<Reply> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    let body = serde_json::json!({ "path": path }).to_string();
    send(addr, "POST", "/api/retrain", &headers, &body)
}
