//! The application backend of the hook tests: `tests/backend/http_backend.py` (Python standard
//! library) as a child process on a free port, with its recorded requests and its settings.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::gyre_process::http_request;
use crate::module_build::workspace_root;

/// A running `http_backend.py`; killed on drop.
pub struct HttpBackend {
    child: Child,
    port: u16,
}

impl HttpBackend {
    /// Starts the backend and waits until it listens.
    pub fn start() -> Self {
        let script = workspace_root()
            .join("tests")
            .join("backend")
            .join("http_backend.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .args(["--port", "0"])
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
        let port = line
            .trim()
            .strip_prefix("LISTENING ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("backend said {line:?}"));
        Self { child, port }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port><path>`, e.g. `url("/centrifugo/connect")`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every hook request received so far: `{path, body, headers, problems}`.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        let (status, body) =
            http_request(self.port, "GET", "/requests", &[], b"").expect("GET /requests");
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

    /// Changes the backend's behaviour (`expire_users`, `expire_subscriptions`, `delay_ms`).
    pub fn control(&self, settings: serde_json::Value) {
        let body = settings.to_string();
        let (status, reply) = http_request(self.port, "POST", "/control", &[], body.as_bytes())
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
