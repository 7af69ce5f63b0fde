//! The real Centrifugo SDKs as test clients: what they need installed, the scenario scripts that
//! drive them, the deployment they run against and what their results must show.
//!
//! - [`node_sdk_status`] / [`python_sdk_status`] say whether the SDK dependencies are
//!   installed; [`require_node_sdk`], [`require_python_sdk`] and [`require_chromium`] fail the
//!   test when they are not.
//! - `script`: [`SdkScript`] runs one scenario script (Node from `tests/sdk/node`, Python from the
//!   venv in `tests/sdk/python/.venv`), answers its `GYRE-STEP <name>` requests through a
//!   callback, kills it after a deadline and returns its one JSON stdout line ([`ScriptOutput`]).
//!   `GYRE_SDK_VERBOSE=1` prints every script's result line and stderr, also on success.
//! - `env`: [`SdkEnv`] is Redis + `gyre` with the namespaces the scenarios use; `json_*` read
//!   results.
//! - `expect` (re-exported as `sdk_expect`): the assertions shared by the Node and Python tests.

mod env;
pub mod expect;
mod script;

pub use env::{
    SDK_HISTORY, SDK_LOCKED_NS, SDK_NS, SDK_SUBSCRIBER_NS, SdkEnv, json_array, json_data,
    json_offsets, json_str, sdk_basic_scenarios,
};
pub use script::{ScriptOutput, SdkScript};

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::module_build::workspace_root;

/// `tests/sdk` in the workspace.
pub fn sdk_dir() -> PathBuf {
    workspace_root().join("tests").join("sdk")
}

/// `Ok(())` when `node` runs and `tests/sdk/node/node_modules` has `centrifuge` and `ws`;
/// otherwise what is missing and how to install it.
pub fn node_sdk_status() -> Result<(), String> {
    let dir = sdk_dir().join("node");
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => return Err(format!("`node --version` failed: {}", out.status)),
        Err(e) => return Err(format!("node is not installed ({e})")),
    }
    for package in ["centrifuge", "ws"] {
        let manifest = dir.join("node_modules").join(package).join("package.json");
        if !manifest.is_file() {
            return Err(format!(
                "{} is missing: run `npm ci` in {} (scripts/test.sh does)",
                manifest.display(),
                dir.display()
            ));
        }
    }
    Ok(())
}

/// The venv's Python interpreter, `tests/sdk/python/.venv/bin/python`.
pub fn python_venv() -> PathBuf {
    sdk_dir()
        .join("python")
        .join(".venv")
        .join("bin")
        .join("python")
}

/// `Ok(())` when the venv exists and imports `centrifuge` and `cent`; otherwise what is missing
/// and how to install it.
pub fn python_sdk_status() -> Result<(), String> {
    let python = python_venv();
    let hint = format!(
        "create it: python3 -m venv {0} && {0}/bin/pip install -r {1} (scripts/test.sh does)",
        sdk_dir().join("python").join(".venv").display(),
        sdk_dir().join("python").join("requirements.txt").display()
    );
    if !python.is_file() {
        return Err(format!("{} is missing: {hint}", python.display()));
    }
    match Command::new(&python)
        .args(["-c", "import centrifuge, cent"])
        .output()
    {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "the venv cannot import centrifuge/cent ({}): {}; {hint}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("run {}: {e}; {hint}", python.display())),
    }
}

/// Fails the test unless the Node SDK (`centrifuge` and the other npm packages) is installed:
/// a test that did not run must never show as passed. `scripts/test.sh` installs everything.
pub fn require_node_sdk() {
    require("Node SDK", node_sdk_status());
}

/// [`require_node_sdk`] for the Python SDK (`centrifuge-python`, `cent` in the venv).
pub fn require_python_sdk() {
    require("Python SDK", python_sdk_status());
}

fn require(what: &str, status: Result<(), String>) {
    if let Err(e) = status {
        panic!(
            "{what} dependencies are missing, so this test cannot run: {e} (scripts/test.sh installs them)"
        )
    }
}

/// Debian's Chromium, driven through npm `playwright-core` by the browser scenarios.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Fails the test unless the browser scenarios can run: Chromium and the Node packages are
/// installed (see [`require_node_sdk`]).
pub fn require_chromium() {
    let status = if Path::new(CHROMIUM).exists() {
        node_sdk_status()
    } else {
        Err(format!("{CHROMIUM} is missing (apt-get install chromium)"))
    };
    require("Chromium", status);
}
