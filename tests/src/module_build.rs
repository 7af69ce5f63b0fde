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
    match PATH.get_or_init(|| MODULE.locate()) {
        Ok(path) => path,
        Err(e) => panic!("{e}"),
    }
}

const MODULE: Artifact = Artifact {
    env_override: "GYRE_MODULE",
    file_name: "libgyre.so",
    cargo_args: &["build", "-p", "gyre-module"],
    sources: &[
        "module/src",
        "module/Cargo.toml",
        "proto/src",
        "proto/proto",
        "proto/build.rs",
        "proto/Cargo.toml",
    ],
};

/// Something `cargo build` makes that tests run as a process or load into one. `cargo test`
/// builds neither a cdylib nor another package's binary, so the harness builds them itself.
pub(crate) struct Artifact {
    /// An environment variable that names a prebuilt file to use instead.
    pub env_override: &'static str,
    /// File name under `<target>/debug`.
    pub file_name: &'static str,
    pub cargo_args: &'static [&'static str],
    /// Paths (relative to the workspace) whose changes make the file stale.
    pub sources: &'static [&'static str],
}

impl Artifact {
    /// The file, built first when it is missing or older than its sources.
    pub(crate) fn locate(&self) -> Result<PathBuf, String> {
        if let Some(path) = std::env::var_os(self.env_override).filter(|p| !p.is_empty()) {
            let path = PathBuf::from(path);
            let path = if path.is_absolute() {
                path
            } else {
                std::env::current_dir()
                    .map_err(|e| format!("current dir: {e}"))?
                    .join(path)
            };
            if !path.is_file() {
                return Err(format!(
                    "{}={} does not exist",
                    self.env_override,
                    path.display()
                ));
            }
            return Ok(path);
        }
        let root = workspace_root();
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .map(|t| if t.is_absolute() { t } else { root.join(t) })
            .unwrap_or_else(|| root.join("target"));
        let file = target.join("debug").join(self.file_name);
        if self.is_stale(root, &file) {
            self.build(root)?;
        }
        if !file.is_file() {
            return Err(format!(
                "cargo {} did not produce {}",
                self.cargo_args.join(" "),
                file.display()
            ));
        }
        Ok(file)
    }

    fn is_stale(&self, root: &Path, file: &Path) -> bool {
        let Ok(built) = std::fs::metadata(file).and_then(|m| m.modified()) else {
            return true;
        };
        self.sources
            .iter()
            .filter_map(|p| newest_mtime(&root.join(p)))
            .any(|t| t > built)
    }

    fn build(&self, root: &Path) -> Result<(), String> {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let command = format!("cargo {}", self.cargo_args.join(" "));
        let output = Command::new(cargo)
            .args(self.cargo_args)
            .current_dir(root)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("run {command}: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "{command} failed ({}):\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(())
    }
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
