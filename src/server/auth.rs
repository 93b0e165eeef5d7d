//! Bearer API keys with two scopes: read (search, ask, embed, read sources) and write (also
//! ingest and delete). With no keys configured the API is open, and the server listens on
//! loopback only. A browser's media element cannot send headers, so `GET` requests may carry
//! the key as `?key=`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::error::ApiError;
use super::ServerState;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Read,
    Write,
}

/// The configured keys.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    read: Vec<String>,
    write: Vec<String>,
}

impl Keys {
    pub fn new(read: &[String], write: &[String]) -> Self {
        let clean = |keys: &[String]| -> Vec<String> {
            keys.iter()
                .map(|k| k.trim().to_string())
                .filter(|k| !k.is_empty())
                .collect()
        };
        Self {
            read: clean(read),
            write: clean(write),
        }
    }

    /// No keys: everything is allowed.
    pub fn is_open(&self) -> bool {
        self.read.is_empty() && self.write.is_empty()
    }

    /// The scope `presented` grants, if any (compared in time independent of where the bytes
    /// differ).
    pub fn scope_of(&self, presented: &str) -> Option<Scope> {
        if self.write.iter().any(|k| same(k, presented)) {
            Some(Scope::Write)
        } else if self.read.iter().any(|k| same(k, presented)) {
            Some(Scope::Read)
        } else {
            None
        }
    }
}

fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The scope a request needs.
pub fn needed(method: &Method, path: &str) -> Scope {
    if method == Method::DELETE || (method == Method::POST && path == "/v1/ingest") {
        Scope::Write
    } else {
        Scope::Read
    }
}

/// The key of a request: `Authorization: Bearer KEY`, or `?key=KEY` on a `GET`.
fn presented(request: &Request) -> Option<String> {
    if let Some(value) = request.headers().get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, key) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| key.trim().to_string());
    }
    if request.method() != Method::GET {
        return None;
    }
    request.uri().query()?.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        (name == "key").then(|| percent_decode(value))
    })
}

/// `%XX` and `+` decoding of a query value.
pub fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Admits a request whose key grants the scope its route needs: 401 without a valid key,
/// 403 for a read key on a write route.
pub async fn require(
    State(state): State<Arc<ServerState>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if state.keys.is_open() {
        return Ok(next.run(request).await);
    }
    let need = needed(request.method(), request.uri().path());
    let Some(key) = presented(&request) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "an API key is required: Authorization: Bearer KEY",
        ));
    };
    match state.keys.scope_of(&key) {
        None => Err(ApiError::new(StatusCode::UNAUTHORIZED, "unknown API key")),
        Some(scope) if scope < need => Err(ApiError::forbidden(
            "this key may read only; ingesting and deleting need a write key",
        )),
        Some(_) => Ok(next.run(request).await),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_grant_their_scope_and_write_includes_read() {
        let keys = Keys::new(&["r1".into()], &["w1".into(), " ".into()]);
        assert_eq!(keys.scope_of("r1"), Some(Scope::Read));
        assert_eq!(keys.scope_of("w1"), Some(Scope::Write));
        assert_eq!(keys.scope_of("w"), None);
        assert_eq!(keys.scope_of(""), None);
        assert!(!keys.is_open());
        assert!(Keys::new(&[], &[" ".into()]).is_open());
        assert_eq!(needed(&Method::DELETE, "/v1/sources/x"), Scope::Write);
        assert_eq!(needed(&Method::POST, "/v1/ingest"), Scope::Write);
        assert_eq!(needed(&Method::POST, "/v1/search"), Scope::Read);
    }

    #[test]
    fn query_values_are_decoded() {
        assert_eq!(percent_decode("a%2Fb+c"), "a/b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
