//! The admin web UI (`admin.enabled`): one page served from the binary (HTML, CSS and script
//! inline, nothing fetched from elsewhere) and the endpoints it calls, under
//! `admin.handler_prefix` (the page at `/`, `/admin/auth`, `/admin/api/<method>`,
//! `/admin/stats`).
//!
//! Login: the page posts `admin.password` to `/admin/auth` and gets a session token (an HS256
//! JWT signed with `admin.secret`, valid [`SESSION_TTL`]), which it keeps in the tab's session
//! storage and sends as `Authorization: token <jwt>`; the API key never reaches the page.
//! Failed logins are bounded per client address ([`LoginThrottle`]). With `admin.insecure` no
//! login is asked for.
//!
//! `/admin/api/<method>` runs the server API's methods (`crate::api::answer`); `/admin/stats`
//! gives this node's counters for the page's live chart.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::protocol::node::Node;
use crate::transport::admission::ConnectionSlot;
use crate::transport::http::read_body_within;
use crate::transport::http::{Body, Peer, html, json, text};

const PAGE: &str = include_str!("page.html");

/// How long a login lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Failed logins one client address may make per [`THROTTLE_WINDOW`]; beyond them every login
/// from it is refused (429) until the window ends, without looking at the password.
const MAX_FAILURES: u32 = 5;
const THROTTLE_WINDOW: Duration = Duration::from_secs(30);
/// Largest login or API request body the UI sends.
const MAX_BODY: usize = 1 << 20;

/// The part of `path` after the admin UI's prefix, or `None` when `path` is not the UI's.
pub fn path_in<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = if prefix.is_empty() {
        path
    } else {
        match path.strip_prefix(prefix)? {
            "" => "/",
            rest if rest.starts_with('/') => rest,
            _ => return None,
        }
    };
    (rest == "/" || rest == "/admin" || rest.starts_with("/admin/")).then_some(rest)
}

/// Serves `rest`, the path below the UI's prefix.
pub async fn handle(node: Arc<Node>, request: Request<Incoming>, rest: &str) -> Response<Body> {
    match (request.method(), rest) {
        (&Method::GET, "/") => page(&node),
        (_, "/admin/auth") => login(&node, request).await,
        (_, "/admin/stats") => match authorized(&node, &request) {
            Ok(()) => json(StatusCode::OK, stats(&node)),
            Err(refused) => *refused,
        },
        (_, api) if api.starts_with("/admin/api/") => {
            if let Err(refused) = authorized(&node, &request) {
                return *refused;
            }
            if request.method() != Method::POST {
                return text(StatusCode::METHOD_NOT_ALLOWED, "admin API calls are POSTs");
            }
            let method = api.trim_start_matches("/admin/api/").to_owned();
            let timeout = node.config.http_server.read_body_timeout;
            match read_body_within(request, MAX_BODY, timeout).await {
                Ok(body) => crate::api::answer(&node, &method, &body).await,
                Err(refused) => refused,
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

/// The page, told where its endpoints are and whether to ask for a password.
fn page(node: &Node) -> Response<Body> {
    let config = &node.config;
    let base = format!(
        "{}{}",
        config.http_server.handler_prefix, config.admin.handler_prefix
    );
    let page = PAGE
        .replacen("/*BASE*/\"\"", &serde_json::json!(base).to_string(), 1)
        .replacen("/*INSECURE*/false", &config.admin.insecure.to_string(), 1);
    let mut response = html(page);
    // The page holds a session token: no caching, no framing by other sites.
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    response
}

/// What a session token says. The audience keeps it apart from any other token signed with
/// the same secret (a connection token of a user named "admin", were `admin.secret` reused as
/// `client.token.hmac_secret_key`).
#[derive(Serialize, Deserialize)]
struct SessionClaims {
    sub: String,
    aud: String,
    exp: u64,
}

const SESSION_AUDIENCE: &str = "gyre-admin";

#[derive(Deserialize)]
struct LoginRequest {
    password: String,
}

async fn login(node: &Node, request: Request<Incoming>) -> Response<Body> {
    if request.method() != Method::POST {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "log in with POST {\"password\":…}",
        );
    }
    let address = request
        .extensions()
        .get::<Peer>()
        .map(|peer| peer.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let throttle = LoginThrottle::global();
    if let Some(wait) = throttle.refused_for(address, Instant::now()) {
        let mut response = text(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed logins from this address; try again later",
        );
        if let Ok(value) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    let timeout = node.config.http_server.read_body_timeout;
    let body = match read_body_within(request, 4096, timeout).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let Ok(LoginRequest { password }) = serde_json::from_slice(&body) else {
        return text(
            StatusCode::BAD_REQUEST,
            "the body must be {\"password\":\"…\"}",
        );
    };
    let admin = &node.config.admin;
    if !admin.insecure && !same_text(password.as_bytes(), admin.password.as_bytes()) {
        throttle.failed(address, Instant::now());
        tracing::warn!(%address, "admin login with a wrong password");
        return text(StatusCode::UNAUTHORIZED, "wrong password");
    }
    match sign_session(signing_secret(node), unix_now() + SESSION_TTL.as_secs()) {
        Ok(token) => json(
            StatusCode::OK,
            serde_json::json!({ "token": token }).to_string(),
        ),
        Err(error) => {
            tracing::error!(%error, "admin session token not signed");
            text(StatusCode::INTERNAL_SERVER_ERROR, "cannot sign a session")
        }
    }
}

/// `admin.secret`; in insecure mode (where it may be empty and tokens are not checked) a
/// stand-in, since signing needs a key.
fn signing_secret(node: &Node) -> &str {
    match node.config.admin.secret.as_str() {
        "" => "insecure",
        secret => secret,
    }
}

/// Whether the request carries a valid session token (or no login is needed at all); else
/// the 401 to answer.
fn authorized(node: &Node, request: &Request<Incoming>) -> Result<(), Box<Response<Body>>> {
    if node.config.admin.insecure {
        return Ok(());
    }
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("token "))
        .map(str::trim);
    let Some(token) = token else {
        return Err(Box::new(text(StatusCode::UNAUTHORIZED, "log in first")));
    };
    verify_session(signing_secret(node), token)
        .map(|()| {
            // An operator's connection: no longer one that may be an attacker's holding a slot.
            ConnectionSlot::authenticated(request);
        })
        .map_err(|error| {
            tracing::debug!(%error, "admin session token refused");
            Box::new(text(
                StatusCode::UNAUTHORIZED,
                "the session is not valid (expired?): log in again",
            ))
        })
}

/// A session token valid until `exp` (Unix seconds).
fn sign_session(secret: &str, exp: u64) -> jsonwebtoken::errors::Result<String> {
    let claims = SessionClaims {
        sub: "admin".to_owned(),
        aud: SESSION_AUDIENCE.to_owned(),
        exp,
    };
    EncodingKey::from_secret(secret.as_bytes())
        .and_then(|key| jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key))
}

/// Whether `token` is a session token signed with `secret` and not expired.
fn verify_session(secret: &str, token: &str) -> jsonwebtoken::errors::Result<()> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub", "aud"]);
    validation.sub = Some("admin".to_owned());
    validation.set_audience(&[SESSION_AUDIENCE]);
    DecodingKey::from_secret(secret.as_bytes())
        .and_then(|key| jsonwebtoken::decode::<SessionClaims>(token, &key, &validation))
        .map(|_| ())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Compares without leaking, through timing, how much of the password was right.
fn same_text(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Failed logins per client address, in fixed windows.
#[derive(Default)]
struct LoginThrottle {
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

/// Addresses tracked at most: beyond it, windows that ended are forgotten first.
const THROTTLE_ADDRESSES: usize = 4096;

impl LoginThrottle {
    fn global() -> &'static LoginThrottle {
        static THROTTLE: OnceLock<LoginThrottle> = OnceLock::new();
        THROTTLE.get_or_init(LoginThrottle::default)
    }

    /// How long `address` must wait before it may try again, if it must.
    fn refused_for(&self, address: IpAddr, now: Instant) -> Option<Duration> {
        let failures = self.failures.lock();
        let (since, count) = failures.get(&address)?;
        let elapsed = now.saturating_duration_since(*since);
        (*count >= MAX_FAILURES && elapsed < THROTTLE_WINDOW).then(|| THROTTLE_WINDOW - elapsed)
    }

    fn failed(&self, address: IpAddr, now: Instant) {
        let mut failures = self.failures.lock();
        if failures.len() >= THROTTLE_ADDRESSES {
            failures
                .retain(|_, (since, _)| now.saturating_duration_since(*since) < THROTTLE_WINDOW);
        }
        let entry = failures.entry(address).or_insert((now, 0));
        if now.saturating_duration_since(entry.0) >= THROTTLE_WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }
}

/// This node's counters as the chart needs them (totals since start; the page derives rates):
/// connections accepted, client messages received, messages delivered, errors.
fn stats(node: &Node) -> String {
    let exposition = crate::metrics::render();
    let total = |names: &[&str]| -> f64 {
        names
            .iter()
            .map(|name| counter_total(&exposition, name))
            .sum()
    };
    serde_json::json!({
        "node": node.id,
        "connections": total(&[crate::metrics::CONNECTIONS_ACCEPTED]),
        "messages": total(&[crate::metrics::MESSAGES_RECEIVED]),
        "deliveries": total(&[crate::metrics::MESSAGES_SENT]),
        "errors": total(&[crate::metrics::COMMAND_ERRORS, crate::metrics::ENGINE_ERRORS]),
        "num_clients": node.hub.num_connections(),
    })
    .to_string()
}

/// The sum of every series of counter `name` in a Prometheus text exposition.
fn counter_total(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let value = match rest.chars().next()? {
                '{' => rest.rsplit_once('}')?.1,
                ' ' => rest,
                _ => return None, // another metric whose name starts with this one
            };
            value.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ui_owns_its_page_and_admin_paths_only() {
        assert_eq!(path_in("/", ""), Some("/"));
        assert_eq!(path_in("/admin/auth", ""), Some("/admin/auth"));
        assert_eq!(path_in("/api/publish", ""), None);
        assert_eq!(path_in("/ops", "/ops"), Some("/"));
        assert_eq!(
            path_in("/ops/admin/api/info", "/ops"),
            Some("/admin/api/info")
        );
        assert_eq!(path_in("/opsx", "/ops"), None);
        assert_eq!(path_in("/", "/ops"), None);
    }

    #[test]
    fn only_unexpired_session_tokens_of_this_secret_open_the_ui() {
        let later = unix_now() + 600;
        let token = sign_session("s3cret", later).unwrap();
        assert!(verify_session("s3cret", &token).is_ok());
        assert!(verify_session("other", &token).is_err(), "another secret");
        let expired = sign_session("s3cret", unix_now() - 3600).unwrap();
        assert!(verify_session("s3cret", &expired).is_err(), "expired");
        // A token of the same secret for something else (no audience): a user's connection
        // token, were the secret shared.
        #[derive(Serialize)]
        struct Connection {
            sub: String,
            exp: u64,
        }
        let key = EncodingKey::from_secret(b"s3cret").unwrap();
        let claims = Connection {
            sub: "admin".into(),
            exp: later,
        };
        let connection = jsonwebtoken::encode(&Header::default(), &claims, &key).unwrap();
        assert!(
            verify_session("s3cret", &connection).is_err(),
            "no audience"
        );
    }

    #[test]
    fn failed_logins_are_throttled_per_address_for_a_window() {
        let throttle = LoginThrottle::default();
        let start = Instant::now();
        let attacker = IpAddr::from([10, 0, 0, 1]);
        let operator = IpAddr::from([10, 0, 0, 2]);
        for _ in 0..MAX_FAILURES {
            assert_eq!(throttle.refused_for(attacker, start), None);
            throttle.failed(attacker, start);
        }
        assert!(throttle.refused_for(attacker, start).is_some());
        assert_eq!(throttle.refused_for(operator, start), None, "per address");
        assert_eq!(
            throttle.refused_for(attacker, start + THROTTLE_WINDOW),
            None,
            "the window ends"
        );
    }

    #[test]
    fn counters_are_summed_over_their_series() {
        let exposition = "# TYPE gyre_x_total counter\n\
            gyre_x_total{transport=\"websocket\"} 3\n\
            gyre_x_total{transport=\"sse\"} 4\n\
            gyre_x_total_other 100\n\
            gyre_y 7\n";
        assert_eq!(counter_total(exposition, "gyre_x_total"), 7.0);
        assert_eq!(counter_total(exposition, "gyre_y"), 7.0);
        assert_eq!(counter_total(exposition, "gyre_z"), 0.0);
    }
}
