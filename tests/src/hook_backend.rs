//! The application backend of the hook tests: `tests/backend/http_backend.py` (Python standard
//! library) as a child process on a free port, with its recorded requests and its settings;
//! over HTTPS too ([`HttpBackend::start_tls`]), presenting a certificate of the test PKI and
//! optionally requiring one from its clients.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::http::http_request;
use crate::module_build::workspace_root;
use crate::tls_pki::{CertFiles, TestPki};

/// A running `http_backend.py`; killed on drop.
pub struct HttpBackend {
    child: Child,
    port: u16,
    /// Where /requests and /control are served: `port`, or a plain HTTP port beside the
    /// HTTPS one.
    control_port: u16,
    tls: bool,
}

impl HttpBackend {
    /// Starts the backend and waits until it listens.
    pub fn start() -> Self {
        Self::spawn(&[])
    }

    /// The backend over HTTPS, presenting `server` (of `pki`); with `require_client_cert`, the
    /// TLS handshake fails for clients without a certificate of `pki`'s CA.
    pub fn start_tls(pki: &TestPki, server: &CertFiles, require_client_cert: bool) -> Self {
        let path = |p: &std::path::Path| p.to_str().expect("utf-8 path").to_owned();
        let mut args = vec![
            "--tls-cert".to_owned(),
            path(&server.cert),
            "--tls-key".to_owned(),
            path(&server.key),
        ];
        if require_client_cert {
            args.push("--tls-client-ca".to_owned());
            args.push(path(&pki.ca_cert()));
        }
        Self::spawn(&args)
    }

    fn spawn(args: &[String]) -> Self {
        let script = workspace_root()
            .join("tests")
            .join("backend")
            .join("http_backend.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .args(["--port", "0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn python3 {}: {e}", script.display()));
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the backend's first line");
        let ports: Vec<u16> = line
            .trim()
            .strip_prefix("LISTENING ")
            .unwrap_or_else(|| panic!("backend said {line:?}"))
            .split(" CONTROL ")
            .map(|p| {
                p.parse()
                    .unwrap_or_else(|_| panic!("backend said {line:?}"))
            })
            .collect();
        let (port, control_port) = match ports[..] {
            [port] => (port, port),
            [port, control] => (port, control),
            _ => panic!("backend said {line:?}"),
        };
        Self {
            child,
            port,
            control_port,
            tls: args.iter().any(|a| a == "--tls-cert"),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port><path>` (`https://` over TLS), e.g. `url("/centrifugo/connect")`.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}{path}", self.port)
    }

    /// Every hook request received so far: `{path, body, headers, problems}`.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        let (status, body) =
            http_request(self.control_port, "GET", "/requests", &[], b"").expect("GET /requests");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("requests JSON")
    }

    /// The requests of one hook (`"connect"`, `"rpc"`…).
    pub fn requests_to(&self, hook: &str) -> Vec<serde_json::Value> {
        let path = format!("/centrifugo/{hook}");
        self.requests()
            .into_iter()
            .filter(|r| r["path"] == path.as_str())
            .collect()
    }

    /// Gyre's config of the hooks of this backend: connect (cookies and an emulated
    /// `Authorization` header), refresh, subscribe, publish and sub_refresh for the `hooks`
    /// namespace (presence on), RPC for methods without a namespace (`plain:*` is not proxied).
    /// `extra` is more TOML (new tables).
    pub fn config(&self, extra: &str) -> String {
        let url = |hook: &str| self.url(&format!("/centrifugo/{hook}"));
        format!(
            r#"
[client.proxy.connect]
enabled = true
endpoint = "{connect}"
timeout = "1s"
http_headers = ["Cookie", "Authorization"]
emulated_headers = ["Authorization", "X-Device"]
[client.proxy.connect.http]
static_headers = {{ "X-Gyre-Test" = "static", "X-Device" = "fixed" }}

[client.proxy.refresh]
enabled = true
endpoint = "{refresh}"

[channel.proxy.subscribe]
endpoint = "{subscribe}"
timeout = "500ms"
include_connection_meta = true
[channel.proxy.publish]
endpoint = "{publish}"
[channel.proxy.sub_refresh]
endpoint = "{sub_refresh}"

[rpc.proxy]
endpoint = "{rpc}"
timeout = "500ms"
include_connection_meta = true
[rpc.proxy.http]
status_to_code_transforms = [{{ status_code = 500, to_error = {{ code = 1500, message = "backend broke" }} }}]
[rpc.without_namespace]
proxy_enabled = true
[[rpc.namespaces]]
name = "plain"

[[channel.namespaces]]
name = "hooks"
presence = true
join_leave = true
allow_presence_for_client = true
subscribe_proxy_enabled = true
publish_proxy_enabled = true
sub_refresh_proxy_enabled = true
{extra}
"#,
            connect = url("connect"),
            refresh = url("refresh"),
            subscribe = url("subscribe"),
            publish = url("publish"),
            sub_refresh = url("sub_refresh"),
            rpc = url("rpc"),
        )
    }

    /// Changes the backend's behaviour (`expire_users`, `expire_subscriptions`, `delay_ms`).
    pub fn control(&self, settings: serde_json::Value) {
        let body = settings.to_string();
        let (status, reply) =
            http_request(self.control_port, "POST", "/control", &[], body.as_bytes())
                .expect("POST /control");
        assert_eq!(status, 200, "{reply}");
    }

    /// Waits until `hook` got at least `n` requests; returns them.
    pub fn wait_requests(&self, hook: &str, n: usize, timeout: Duration) -> Vec<serde_json::Value> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let requests = self.requests_to(hook);
            if requests.len() >= n || std::time::Instant::now() > deadline {
                return requests;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for HttpBackend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
