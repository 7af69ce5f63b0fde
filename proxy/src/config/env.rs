//! Key paths, `GYRE_*` (and their `CENTRIFUGO_*` aliases) environment variables and flag
//! overrides.
//!
//! The set of key paths is not written down anywhere: it is read off the schema by serializing
//! the default [`Config`] to a JSON tree and collecting its leaves, so a new field is settable
//! from the environment the moment it exists, and names with underscores map back to exactly
//! one path (`GYRE_CLIENT_TOKEN_HMAC_SECRET_KEY` → `client.token.hmac_secret_key`).

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::error::{Origin, Problem};
use super::load::Warning;
use super::{
    Config, HttpResponseTransform, NamedProxy, Namespace, RpcNamespace, StatusTransform,
    UniDisconnectTransform,
};

/// Environment variables under the `GYRE_` prefix that are not config keys: the bin takes the
/// config file path from `GYRE_CONFIG`.
const RESERVED_ENV: &[&str] = &["GYRE_CONFIG"];

/// Centrifugo's environment prefix, read as an alias of `GYRE_`.
const CENTRIFUGO_PREFIX: &str = "CENTRIFUGO_";

/// Lists whose entries are comma-separated lists themselves (`"h1:7000,h2:7000"` is one
/// cluster): plain text from the environment or a flag is one entry, not split at commas.
const LISTS_OF_LISTS: &[&str] = &["engine.redis.cluster_address"];

/// The default config as a JSON tree, with one default element in every list of tables
/// (`channel.namespaces`, `rpc.namespaces`, `proxies`, each proxy's
/// `http.status_to_code_transforms`, the `transforms` of the connect code transforms) so that
/// the keys of an element are known too.
///
/// An empty table in this tree is a map with free keys (`http.static_headers`…): every struct
/// of the schema has at least one field, so only a map serializes to `{}`.
pub(super) fn schema() -> Value {
    let sample = |value: Value| Value::Array(vec![value]);
    let mut tree = serde_json::to_value(Config::default()).expect("the config serializes");
    let namespace = serde_json::to_value(Namespace::default()).expect("a namespace serializes");
    tree["channel"]["namespaces"] = sample(namespace);
    let rpc_namespace =
        serde_json::to_value(RpcNamespace::default()).expect("an rpc namespace serializes");
    tree["rpc"]["namespaces"] = sample(rpc_namespace);
    let proxy = serde_json::to_value(NamedProxy::default()).expect("a proxy serializes");
    tree["proxies"] = sample(proxy);
    add_transform_samples(&mut tree);
    let uni = serde_json::to_value(UniDisconnectTransform::default()).expect("serializes");
    tree["client"]["connect_code_to_unidirectional_disconnect"]["transforms"] = sample(uni);
    let http = serde_json::to_value(HttpResponseTransform::default()).expect("serializes");
    for transport in ["uni_sse", "uni_http_stream"] {
        tree[transport]["connect_code_to_http_response"]["transforms"] = sample(http.clone());
    }
    tree
}

/// Puts a sample element into every `status_to_code_transforms` list of the tree.
fn add_transform_samples(tree: &mut Value) {
    match tree {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if key == "status_to_code_transforms" {
                    let transform = serde_json::to_value(StatusTransform::default())
                        .expect("a transform serializes");
                    *child = Value::Array(vec![transform]);
                } else {
                    add_transform_samples(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(add_transform_samples),
        _ => {}
    }
}

/// What an environment or flag value is parsed into, from the default value's JSON type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Bool,
    Number,
    /// Strings, durations and enum names: taken verbatim, checked by deserialization.
    String,
    /// A list of strings: a JSON array or comma-separated text.
    Strings,
    /// A list of strings that hold commas themselves: a JSON array, or plain text as one entry.
    CommaStrings,
    /// A list of tables (`channel.namespaces`): a JSON array only.
    Tables,
    /// A map of strings (`http.static_headers`): a JSON object only.
    Map,
}

/// Every settable key path with its kind, and the environment name of each.
pub(super) struct Keys {
    pub by_path: BTreeMap<String, Kind>,
    by_env: HashMap<String, String>,
}

impl Keys {
    pub fn from_schema(schema: &Value) -> Self {
        let mut by_path = BTreeMap::new();
        collect_leaves(schema, "", &mut by_path);
        for path in LISTS_OF_LISTS {
            if let Some(kind) = by_path.get_mut(*path) {
                *kind = Kind::CommaStrings;
            }
        }
        let by_env = by_path
            .keys()
            .map(|path| (env_var_name(path), path.clone()))
            .collect();
        Self { by_path, by_env }
    }
}

fn collect_leaves(value: &Value, prefix: &str, out: &mut BTreeMap<String, Kind>) {
    let Value::Object(map) = value else { return };
    for (key, child) in map {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let kind = match child {
            Value::Object(fields) if fields.is_empty() => Kind::Map,
            Value::Object(_) => {
                collect_leaves(child, &path, out);
                continue;
            }
            Value::Bool(_) => Kind::Bool,
            Value::Number(_) => Kind::Number,
            Value::Array(items) if items.iter().any(Value::is_object) => Kind::Tables,
            Value::Array(_) => Kind::Strings,
            Value::String(_) | Value::Null => Kind::String,
        };
        out.insert(path, kind);
    }
}

/// Every key path an environment variable or flag can set, sorted (`http_server.port`,
/// `channel.namespaces`, …). Keys inside a namespace are set through `channel.namespaces`.
pub fn known_keys() -> Vec<String> {
    Keys::from_schema(&schema()).by_path.into_keys().collect()
}

/// The environment variable for a key path: `http_server.port` → `GYRE_HTTP_SERVER_PORT`.
pub fn env_var_name(path: &str) -> String {
    format!("GYRE_{}", path.to_ascii_uppercase().replace('.', "_"))
}

/// Parses text from the environment or a flag into the JSON value the field expects.
fn parse_value(kind: Kind, raw: &str) -> Result<Value, String> {
    let text = raw.trim();
    match kind {
        Kind::String => Ok(Value::String(raw.to_owned())),
        Kind::Bool => match text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Value::Bool(true)),
            "false" | "0" | "no" | "off" => Ok(Value::Bool(false)),
            _ => Err(format!("expected true or false, got `{raw}`")),
        },
        Kind::Number => text
            .parse::<u64>()
            .map(Value::from)
            .map_err(|_| format!("expected a whole number, got `{raw}`")),
        Kind::Strings if !text.starts_with('[') => Ok(Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        )),
        Kind::CommaStrings if !text.starts_with('[') => Ok(Value::Array(
            Some(text)
                .filter(|t| !t.is_empty())
                .map(|t| Value::String(t.to_owned()))
                .into_iter()
                .collect(),
        )),
        Kind::Strings | Kind::CommaStrings | Kind::Tables => {
            match serde_json::from_str::<Value>(text) {
                Ok(value @ Value::Array(_)) => Ok(value),
                Ok(_) => Err("expected a JSON array".to_owned()),
                Err(e) => Err(format!("expected a JSON array: {e}")),
            }
        }
        Kind::Map => match serde_json::from_str::<Value>(text) {
            Ok(value @ Value::Object(_)) => Ok(value),
            Ok(_) => Err("expected a JSON object".to_owned()),
            Err(e) => Err(format!("expected a JSON object: {e}")),
        },
    }
}

/// Puts `value` at `path`, creating tables on the way. A non-table in the way (the file said
/// `client = 5`) is left alone: deserialization reports it, with the file as origin.
fn set_path(tree: &mut Value, path: &str, value: Value) {
    let mut node = tree;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let Value::Object(map) = node else { return };
        if parts.peek().is_none() {
            map.insert(part.to_owned(), value);
            return;
        }
        node = map
            .entry(part.to_owned())
            .or_insert_with(|| Value::Object(Default::default()));
    }
}

/// Where the values set by environment and flags came from, latest last.
#[derive(Debug, Default)]
pub(super) struct Origins(Vec<(String, Origin)>);

impl Origins {
    /// The origin of the value at `path` (a key path, possibly with `[i]` and deeper keys).
    pub fn of(&self, path: &str) -> Origin {
        self.0
            .iter()
            .rev()
            .find(|(set, _)| {
                path == set
                    || path
                        .strip_prefix(set.as_str())
                        .is_some_and(|rest| rest.starts_with(['.', '[']))
            })
            .map_or(Origin::File, |(_, origin)| origin.clone())
    }
}

/// Applies `CENTRIFUGO_*` and `GYRE_*` variables to the tree. A `CENTRIFUGO_<KEY_PATH>`
/// variable sets the same key as `GYRE_<KEY_PATH>`, so the environment of a Centrifugo
/// deployment (Helm values, compose files) carries over; when both are set the `GYRE_` one wins
/// and the other is not even parsed. Names that are no option become warnings: shells carry
/// stray variables, and refusing to start over one would be worse than saying so.
///
/// Returns the `CENTRIFUGO_*` variables that set a key, sorted, for the bin to tell once.
pub(super) fn apply_env(
    tree: &mut Value,
    env: impl IntoIterator<Item = (String, String)>,
    keys: &Keys,
    origins: &mut Origins,
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<Warning>,
) -> Vec<String> {
    let (mut centrifugo, mut gyre): (Vec<_>, Vec<_>) = env
        .into_iter()
        .filter(|(name, _)| name.starts_with("GYRE_") || name.starts_with(CENTRIFUGO_PREFIX))
        .partition(|(name, _)| name.starts_with(CENTRIFUGO_PREFIX));
    // Sorted so that errors and warnings come out in the same order on every run.
    centrifugo.sort();
    gyre.sort();
    let mut used = Vec::new();
    for (var, raw) in centrifugo {
        let ours = format!("GYRE_{}", &var[CENTRIFUGO_PREFIX.len()..]);
        let Some(path) = keys.by_env.get(&ours) else {
            warnings.push(Warning::UnknownCentrifugoEnv { var });
            continue;
        };
        if gyre.iter().any(|(name, _)| *name == ours) {
            warnings.push(Warning::CentrifugoEnvShadowed { var, by: ours });
            continue;
        }
        let kind = keys.by_path[path];
        set_parsed(
            tree,
            path,
            kind,
            &raw,
            Origin::Env(var.clone()),
            origins,
            problems,
        );
        used.push(var);
    }
    for (var, raw) in gyre {
        if RESERVED_ENV.contains(&var.as_str()) {
            continue;
        }
        let Some(path) = keys.by_env.get(&var) else {
            warnings.push(Warning::UnknownEnv { var });
            continue;
        };
        let origin = Origin::Env(var);
        set_parsed(
            tree,
            path,
            keys.by_path[path],
            &raw,
            origin,
            origins,
            problems,
        );
    }
    used
}

/// Applies flag overrides (`key path`, `value`). Unlike the environment, an unknown key here is
/// an error: somebody typed it on purpose.
pub(super) fn apply_overrides(
    tree: &mut Value,
    overrides: &[(String, String)],
    keys: &Keys,
    origins: &mut Origins,
    problems: &mut Vec<Problem>,
) {
    for (key, raw) in overrides {
        let origin = Origin::Flag(key.clone());
        match keys.by_path.get(key) {
            Some(&kind) => set_parsed(tree, key, kind, raw, origin, origins, problems),
            None => problems.push(Problem::UnknownKey {
                path: key.clone(),
                origin,
            }),
        }
    }
}

fn set_parsed(
    tree: &mut Value,
    path: &str,
    kind: Kind,
    raw: &str,
    origin: Origin,
    origins: &mut Origins,
    problems: &mut Vec<Problem>,
) {
    match parse_value(kind, raw) {
        Ok(value) => {
            set_path(tree, path, value);
            origins.0.push((path.to_owned(), origin));
        }
        Err(message) => problems.push(Problem::BadValue {
            path: path.to_owned(),
            origin,
            message,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_are_unique_and_cover_the_issue_keys() {
        let keys = Keys::from_schema(&schema());
        assert_eq!(
            keys.by_env.len(),
            keys.by_path.len(),
            "two paths share a name"
        );
        for (var, path) in [
            ("GYRE_HTTP_SERVER_PORT", "http_server.port"),
            (
                "GYRE_CLIENT_TOKEN_HMAC_SECRET_KEY",
                "client.token.hmac_secret_key",
            ),
            ("GYRE_ENGINE_REDIS_ADDRESS", "engine.redis.address"),
            ("GYRE_CHANNEL_NAMESPACES", "channel.namespaces"),
            (
                "GYRE_CHANNEL_WITHOUT_NAMESPACE_HISTORY_TTL",
                "channel.without_namespace.history_ttl",
            ),
            (
                "GYRE_CLIENT_SUBSCRIPTION_TOKEN_ENABLED",
                "client.subscription_token.enabled",
            ),
        ] {
            assert_eq!(keys.by_env.get(var).map(String::as_str), Some(path));
        }
        assert_eq!(keys.by_path["channel.namespaces"], Kind::Tables);
        assert_eq!(keys.by_path["engine.redis.address"], Kind::Strings);
        assert_eq!(keys.by_path["engine.redis.sentinel_address"], Kind::Strings);
        assert_eq!(
            keys.by_path["engine.redis.cluster_address"],
            Kind::CommaStrings
        );
        assert_eq!(keys.by_path["engine.redis.tls.enabled"], Kind::Bool);
        assert_eq!(
            keys.by_env
                .get("GYRE_ENGINE_REDIS_SENTINEL_TLS_SERVER_CA_PEM_FILE"),
            Some(&"engine.redis.sentinel_tls.server_ca_pem_file".to_owned())
        );
        assert_eq!(keys.by_path["client.insecure"], Kind::Bool);
        assert_eq!(keys.by_path["client.channel_limit"], Kind::Number);
        assert_eq!(keys.by_path["client.ping_interval"], Kind::String);
    }

    #[test]
    fn values_parse_by_kind() {
        assert_eq!(parse_value(Kind::Bool, "TRUE"), Ok(Value::Bool(true)));
        assert_eq!(parse_value(Kind::Bool, "0"), Ok(Value::Bool(false)));
        assert!(parse_value(Kind::Bool, "maybe").is_err());
        assert_eq!(parse_value(Kind::Number, " 42 "), Ok(Value::from(42u64)));
        assert!(parse_value(Kind::Number, "-1").is_err());
        assert_eq!(
            parse_value(Kind::Strings, "redis://a:1, redis://b:2,"),
            Ok(serde_json::json!(["redis://a:1", "redis://b:2"]))
        );
        assert_eq!(
            parse_value(Kind::Strings, r#"["x,y"]"#),
            Ok(serde_json::json!(["x,y"]))
        );
        assert_eq!(parse_value(Kind::Strings, ""), Ok(serde_json::json!([])));
        assert_eq!(
            parse_value(Kind::CommaStrings, "h1:7000, h2:7000"),
            Ok(serde_json::json!(["h1:7000, h2:7000"]))
        );
        assert_eq!(
            parse_value(Kind::CommaStrings, r#"["a:1,b:2", "c:3"]"#),
            Ok(serde_json::json!(["a:1,b:2", "c:3"]))
        );
        assert!(parse_value(Kind::Tables, "chat").is_err());
        assert!(parse_value(Kind::Tables, "{}").is_err());
    }

    #[test]
    fn origins_match_paths_below_the_key_set() {
        let mut origins = Origins::default();
        origins
            .0
            .push(("channel.namespaces".into(), Origin::Env("GYRE_X".into())));
        origins
            .0
            .push(("channel.max_length".into(), Origin::Flag("f".into())));
        assert_eq!(
            origins.of("channel.namespaces[1].name"),
            Origin::Env("GYRE_X".into())
        );
        assert_eq!(origins.of("channel.max_length"), Origin::Flag("f".into()));
        assert_eq!(origins.of("channel.max_length_x"), Origin::File);
        assert_eq!(origins.of("channel"), Origin::File);
    }
}
