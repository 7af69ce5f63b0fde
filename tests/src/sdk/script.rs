//! One run of a scenario script of a real SDK, and what it printed.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{python_venv, sdk_dir};
use crate::gyre::GyreProcess;

/// One run of a scenario script: program, arguments, deadline.
#[derive(Debug, Clone)]
pub struct SdkScript {
    program: PathBuf,
    args: Vec<String>,
    cwd: PathBuf,
    label: String,
    timeout: Duration,
    env: Vec<(String, String)>,
}

/// What a script run produced.
#[derive(Debug, Clone)]
pub struct ScriptOutput {
    /// Exit code (None when killed by a signal, e.g. at the deadline).
    pub code: Option<i32>,
    /// The last non-empty stdout line (the scenario's JSON result), empty when none.
    pub line: String,
    pub stdout: String,
    pub stderr: String,
    /// Steps the script asked for, in order.
    pub steps: Vec<String>,
    pub elapsed: Duration,
    pub timed_out: bool,
    pub label: String,
}

impl ScriptOutput {
    /// Panics with everything the script printed unless it exited 0 with a result line.
    pub fn expect_success(&self) -> &str {
        if self.code != Some(0) || self.line.is_empty() || self.timed_out {
            panic!("{}", self.describe("failed"));
        }
        &self.line
    }

    /// A report of the run for failure messages.
    pub fn describe(&self, what: &str) -> String {
        format!(
            "{} {what} (exit {:?}, {:?}{})\n--- result line ---\n{}\n--- stderr ---\n{}",
            self.label,
            self.code,
            self.elapsed,
            if self.timed_out {
                ", killed at the deadline"
            } else {
                ""
            },
            self.line,
            tail(&self.stderr, 80)
        )
    }
}

fn tail(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().rev().take(lines).collect();
    v.into_iter().rev().collect::<Vec<_>>().join("\n")
}

impl SdkScript {
    /// `node tests/sdk/node/<script>`.
    pub fn node(script: &str) -> Self {
        let dir = sdk_dir().join("node");
        Self {
            program: PathBuf::from("node"),
            args: vec![dir.join(script).to_string_lossy().into_owned()],
            label: format!("node {script}"),
            cwd: dir,
            timeout: Duration::from_secs(60),
            env: Vec::new(),
        }
    }

    /// `tests/sdk/python/.venv/bin/python tests/sdk/python/<script>`.
    pub fn python(script: &str) -> Self {
        let dir = sdk_dir().join("python");
        Self {
            program: python_venv(),
            args: vec![dir.join(script).to_string_lossy().into_owned()],
            label: format!("python {script}"),
            cwd: dir,
            timeout: Duration::from_secs(60),
            env: Vec::new(),
        }
    }

    /// `--key value`.
    pub fn arg(mut self, key: &str, value: impl ToString) -> Self {
        self.args.push(format!("--{key}"));
        self.args.push(value.to_string());
        self
    }

    /// `--url`, `--secret`, `--api`, `--api-key` of `gyre`.
    pub fn gyre(self, gyre: &GyreProcess) -> Self {
        self.arg("url", gyre.ws_url())
            .arg("secret", gyre.hmac_secret())
            .arg("api", gyre.api_url())
            .arg("api-key", gyre.api_key())
    }

    /// An environment variable of the script's process (e.g. `NODE_EXTRA_CA_CERTS`).
    pub fn env(mut self, key: &str, value: impl ToString) -> Self {
        self.env.push((key.to_owned(), value.to_string()));
        self
    }

    /// The script's own `--timeout` (ms) is `timeout`; the driver kills it 10 s later.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs the script without steps.
    pub fn run(self) -> ScriptOutput {
        self.run_with(|step| Err(format!("this test does not handle step {step:?}")))
    }

    /// Runs the script; each `GYRE-STEP <name>` line on its stderr calls `on_step(name)`, and the
    /// answer (`ok`, or `ERR <message>`) is written to its stdin.
    pub fn run_with(self, mut on_step: impl FnMut(&str) -> Result<(), String>) -> ScriptOutput {
        let started = Instant::now();
        let mut args = self.args.clone();
        args.push("--timeout".to_owned());
        args.push(self.timeout.as_millis().to_string());
        let mut child = Command::new(&self.program)
            .args(&args)
            .current_dir(&self.cwd)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {} {args:?}: {e}", self.program.display()));
        let mut stdin: Option<ChildStdin> = child.stdin.take();
        let mut stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");

        let stdout_thread = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            text
        });
        // stderr lines go through a channel so steps are handled on this thread.
        let (tx, rx) = mpsc::channel::<String>();
        let stderr_thread = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });

        let deadline = started + self.timeout + Duration::from_secs(10);
        let mut stderr_text = String::new();
        let mut steps = Vec::new();
        let mut timed_out = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                timed_out = true;
                let _ = child.kill();
                break;
            }
            match rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(line) => {
                    stderr_text.push_str(&line);
                    stderr_text.push('\n');
                    if let Some(step) = line.strip_prefix("GYRE-STEP ") {
                        let step = step.trim().to_owned();
                        let answer = match on_step(&step) {
                            Ok(()) => "ok".to_owned(),
                            Err(e) => format!("ERR {}", e.replace('\n', " ")),
                        };
                        steps.push(step);
                        if let Some(stdin) = stdin.as_mut() {
                            let _ = writeln!(stdin, "{answer}");
                            let _ = stdin.flush();
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        drop(stdin.take());
        let status = child.wait().ok();
        let _ = stderr_thread.join();
        while let Ok(line) = rx.try_recv() {
            stderr_text.push_str(&line);
            stderr_text.push('\n');
        }
        let stdout_text = stdout_thread.join().unwrap_or_default();
        let line = stdout_text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_owned();
        let output = ScriptOutput {
            code: status.and_then(|s| s.code()),
            line,
            stdout: stdout_text,
            stderr: stderr_text,
            steps,
            elapsed: started.elapsed(),
            timed_out,
            label: self.label,
        };
        if std::env::var_os("GYRE_SDK_VERBOSE").is_some() {
            eprintln!("{}", output.describe("finished"));
        }
        output
    }
}

impl ScriptOutput {
    /// The result line parsed as JSON, after checking that the script exited 0 and reported
    /// `"ok": true`; panics with the script's output otherwise.
    pub fn json(&self) -> serde_json::Value {
        let line = self.expect_success();
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{}", self.describe(&format!("printed no JSON ({e})"))));
        if value["ok"] != serde_json::Value::Bool(true) {
            panic!("{}", self.describe("reported ok != true"));
        }
        value
    }
}
