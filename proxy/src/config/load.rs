//! Loading: defaults < file < environment < flags, then validation.
//!
//! Every layer is merged into one JSON tree before anything is typed: the file is parsed into
//! the tree (TOML, JSON and YAML alike), environment variables and flags overwrite leaves of it, the
//! tree is checked against the schema for unknown keys, and only then deserialized into
//! [`Config`]. Working on one tree is what lets an error name the key path and the variable or
//! flag that set it, and lets one run report every unknown key and every bad value at once.

use std::fmt;
use std::path::Path;

use serde_json::Value;
use serde_path_to_error::Segment;

use super::Config;
use super::env::{self, Keys, Origins};
use super::error::{ConfigError, Problem};

/// A config file's syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Json,
    Yaml,
}

impl Format {
    /// The format named by a file extension (`toml`, `json`, `yaml` or `yml`; any case, without
    /// the dot).
    pub fn from_extension(extension: &str) -> Result<Self, ConfigError> {
        match extension.to_ascii_lowercase().as_str() {
            "toml" => Ok(Format::Toml),
            "json" => Ok(Format::Json),
            "yaml" | "yml" => Ok(Format::Yaml),
            _ => Err(ConfigError::one(Problem::UnsupportedFormat {
                extension: extension.to_owned(),
            })),
        }
    }

    /// The format of the file at `path`, by its extension (no file access).
    pub fn from_path(path: &Path) -> Result<Self, ConfigError> {
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        Self::from_extension(extension)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Toml => "TOML",
            Format::Json => "JSON",
            Format::Yaml => "YAML",
        })
    }
}

/// The text of a config file and its syntax; the bin reads the file.
#[derive(Debug, Clone, Copy)]
pub struct ConfigFile<'a> {
    pub text: &'a str,
    pub format: Format,
}

/// Something worth telling the operator that does not stop the start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Warning {
    /// A `GYRE_*` variable that names no option (a typo, or another program's).
    #[error("environment variable {var} is not a Gyre option; ignored")]
    UnknownEnv { var: String },
    /// A `CENTRIFUGO_*` variable for a Centrifugo option Gyre does not have.
    #[error("environment variable {var} names no Gyre option; ignored")]
    UnknownCentrifugoEnv { var: String },
    /// A `CENTRIFUGO_*` variable whose `GYRE_*` twin is set too: the `GYRE_` one is used.
    #[error("environment variable {var} is ignored: {by} is set too and wins")]
    CentrifugoEnvShadowed { var: String, by: String },
}

/// A validated config and the warnings met on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Warning>,
    /// The `CENTRIFUGO_*` variables that set an option (as aliases of `GYRE_*`), sorted.
    pub centrifugo_env: Vec<String>,
}

/// Loads the configuration: defaults, overwritten by `file` (if any), then by `CENTRIFUGO_*` and
/// `GYRE_*` entries of `env` (`GYRE_` winning; the other entries are ignored), then by `overrides` (`key path`, `value`) from
/// flags; then validates. Values from `env` and `overrides` are parsed by the type of their
/// field: booleans, whole numbers, durations and names as text, lists as a JSON array or
/// comma-separated text, `channel.namespaces` as a JSON array.
///
/// `checkconfig` is exactly this call; the bin prints the result.
pub fn load(
    file: Option<ConfigFile<'_>>,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &[(String, String)],
) -> Result<Loaded, ConfigError> {
    let mut tree = match file {
        Some(file) => parse_tree(file)?,
        None => Value::Object(Default::default()),
    };
    let schema = env::schema();
    let keys = Keys::from_schema(&schema);
    let mut origins = Origins::default();
    let mut problems = Vec::new();
    let mut warnings = Vec::new();

    let centrifugo_env = env::apply_env(
        &mut tree,
        env,
        &keys,
        &mut origins,
        &mut problems,
        &mut warnings,
    );
    env::apply_overrides(&mut tree, overrides, &keys, &mut origins, &mut problems);
    remove_unknown_keys(&mut tree, &schema, String::new(), &origins, &mut problems);
    let config = deserialize(tree, &origins, &mut problems);

    if !problems.is_empty() {
        // By path: the tree's key order depends on serde_json features, the report must not.
        problems.sort_by(|a, b| path_of(a).cmp(path_of(b)));
        return Err(ConfigError { problems });
    }
    config.validate()?;
    config.index.prime(&config);
    Ok(Loaded {
        config,
        warnings,
        centrifugo_env,
    })
}

fn path_of(problem: &Problem) -> &str {
    match problem {
        Problem::UnknownKey { path, .. } | Problem::BadValue { path, .. } => path,
        _ => "",
    }
}

fn parse_tree(file: ConfigFile<'_>) -> Result<Value, ConfigError> {
    let syntax = |message: String| {
        ConfigError::one(Problem::Syntax {
            format: file.format,
            message: message.trim_end().to_owned(),
        })
    };
    let tree: Value = match file.format {
        Format::Toml => toml::from_str(file.text).map_err(|e| syntax(e.to_string()))?,
        Format::Json => serde_json::from_str(file.text).map_err(|e| syntax(e.to_string()))?,
        Format::Yaml => {
            let mut tree: Value =
                serde_saphyr::from_str(file.text).map_err(|e| syntax(e.to_string()))?;
            drop_nulls(&mut tree);
            tree
        }
    };
    if !tree.is_object() {
        return Err(syntax("the top level must be an object".to_owned()));
    }
    Ok(tree)
}

/// `key:` with nothing after it is YAML's null, which Centrifugo's loader reads as the key's zero
/// value; here it means "not set", so the default applies instead of a type error.
fn drop_nulls(tree: &mut Value) {
    match tree {
        Value::Object(map) => {
            map.retain(|_, child| !child.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// Reports and removes every key the schema does not have, so that all of them are listed at
/// once (serde would stop at the first) and deserialization can go on to find bad values.
/// A list of tables is checked element by element against the schema's sample element.
fn remove_unknown_keys(
    tree: &mut Value,
    schema: &Value,
    path: String,
    origins: &Origins,
    problems: &mut Vec<Problem>,
) {
    match (tree, schema) {
        // A map with free keys (see `env::schema`): its values are deserialization's to check.
        (Value::Object(_), Value::Object(known)) if known.is_empty() => {}
        (Value::Object(map), Value::Object(known)) => {
            map.retain(|key, child| {
                let child_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match known.get(key) {
                    Some(child_schema) => {
                        remove_unknown_keys(child, child_schema, child_path, origins, problems);
                        true
                    }
                    None => {
                        let origin = origins.of(&child_path);
                        problems.push(Problem::UnknownKey {
                            path: child_path,
                            origin,
                        });
                        false
                    }
                }
            });
        }
        (Value::Array(items), Value::Array(sample)) => {
            if let Some(element_schema) = sample.first().filter(|s| s.is_object()) {
                for (i, item) in items.iter_mut().enumerate() {
                    let item_path = format!("{path}[{i}]");
                    remove_unknown_keys(item, element_schema, item_path, origins, problems);
                }
            }
        }
        // A shape mismatch (a table where a number belongs…) is deserialization's to report.
        _ => {}
    }
}

/// Deserializes the tree, collecting every bad value: after each failure the offending key is
/// removed (so its default applies) and deserialization runs again. The result is only used
/// when no problem was found.
fn deserialize(mut tree: Value, origins: &Origins, problems: &mut Vec<Problem>) -> Config {
    // Bounded: each round removes one key from a finite tree; the cap is a guard only.
    for _ in 0..256 {
        let error = match serde_path_to_error::deserialize::<_, Config>(tree.clone()) {
            Ok(config) => return config,
            Err(error) => error,
        };
        let segments: Vec<&Segment> = error.path().iter().collect();
        let path = render_path(&segments);
        problems.push(Problem::BadValue {
            origin: origins.of(&path),
            message: error.inner().to_string(),
            path,
        });
        if !remove_at(&mut tree, &segments) {
            break;
        }
    }
    Config::default()
}

fn render_path(segments: &[&Segment]) -> String {
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => out.push_str(".?"),
        }
    }
    out
}

/// Removes the deepest table key on `segments`. A bad list element takes its whole list with
/// it, so that later list indexes in error paths stay those of the input.
fn remove_at(tree: &mut Value, segments: &[&Segment]) -> bool {
    let Some(last_key) = segments
        .iter()
        .rposition(|s| matches!(s, Segment::Map { .. }))
    else {
        return false;
    };
    let mut node = tree;
    for segment in &segments[..last_key] {
        node = match (segment, node) {
            (Segment::Map { key }, Value::Object(map)) => match map.get_mut(key) {
                Some(child) => child,
                None => return false,
            },
            (Segment::Seq { index }, Value::Array(items)) => match items.get_mut(*index) {
                Some(child) => child,
                None => return false,
            },
            _ => return false,
        };
    }
    match (segments[last_key], node) {
        (Segment::Map { key }, Value::Object(map)) => map.remove(key).is_some(),
        _ => false,
    }
}
