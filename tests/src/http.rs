//! One HTTP request to a local server, for `/health`, `/api`, `/metrics` and the transports'
//! plain HTTP answers (ureq, blocking). Tests that must put exact bytes on the wire (slow
//! headers, a raw WebSocket upgrade, streaming reads) keep their own `TcpStream`.

use std::time::Duration;

use ureq::http::Request;

/// One HTTP/1.1 request to `127.0.0.1:<port>` over a fresh connection (never pooled, so it
/// counts against no connection limit after it returns); returns `(status, body)` whatever the
/// status. Connecting, and each read and write, may take up to 5 s.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, String), String> {
    http_request_with_timeout(port, method, path, headers, body, Duration::from_secs(5))
}

/// [`http_request`] with another `timeout` for connecting and for each read and write, for
/// requests the server takes longer to answer.
pub fn http_request_with_timeout(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<(u16, String), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_idle_connections(0)
        .allow_non_standard_methods(true)
        .timeout_connect(Some(timeout))
        .timeout_per_read(Some(timeout))
        .timeout_per_write(Some(timeout))
        .build()
        .into();
    let url = format!("http://127.0.0.1:{port}{path}");
    let mut request = Request::builder().method(method).uri(&url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(body)
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let mut response = agent
        .run(request)
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .map_err(|e| format!("{method} {url}: read body: {e}"))?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
