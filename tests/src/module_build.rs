//! Locating `libgyre.so` and building it when it is missing or stale (`cargo test` does not
//! build the cdylib).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::SystemTime;

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives inside the workspace")
}

/// Absolute path of `libgyre.so`, built once per process if it is missing or stale. A failed
/// build is remembered too, so every test of the process reports it without rebuilding.
pub fn module_path() -> &'static Path {
    static PATH: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PATH.get_or_init(locate_module) {
        Ok(path) => path,
        Err(e) => panic!("{e}"),
    }
}

fn locate_module() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("GYRE_MODULE").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        let path = if path.is_absolute() {
            path
        } else {
            std::env::current_dir().unwrap().join(path)
        };
        if !path.is_file() {
            return Err(format!("GYRE_MODULE={} does not exist", path.display()));
        }
        return Ok(path);
    }
    let root = workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| if t.is_absolute() { t } else { root.join(t) })
        .unwrap_or_else(|| root.join("target"));
    let so = target.join("debug").join("libgyre.so");
    if needs_build(root, &so) {
        build_module(root)?;
    }
    if !so.is_file() {
        return Err(format!(
            "cargo build -p gyre-module did not produce {}",
            so.display()
        ));
    }
    Ok(so)
}

fn needs_build(root: &Path, so: &Path) -> bool {
    let Ok(built) = std::fs::metadata(so).and_then(|m| m.modified()) else {
        return true;
    };
    let sources = [
        root.join("module/src"),
        root.join("module/Cargo.toml"),
        root.join("proto/src"),
        root.join("proto/proto"),
        root.join("proto/build.rs"),
        root.join("proto/Cargo.toml"),
    ];
    sources
        .iter()
        .filter_map(|p| newest_mtime(p))
        .any(|t| t > built)
}

fn newest_mtime(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.is_file() {
        return meta.modified().ok();
    }
    let mut newest = None;
    for entry in std::fs::read_dir(path).ok()?.flatten() {
        if let Some(t) = newest_mtime(&entry.path()) {
            newest = newest.max(Some(t));
        }
    }
    newest
}

fn build_module(root: &Path) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["build", "-p", "gyre-module"])
        .current_dir(root)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run cargo build -p gyre-module: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo build -p gyre-module failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(())
}
