//! Tests of loading, layering, validation and channel lookup, over whole config files.

mod channels;
mod layering;
mod parse;
mod validation;

use super::{Config, ConfigError, ConfigFile, Format, Loaded, Problem, load};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load_toml(
    text: &str,
    env_pairs: &[(&str, &str)],
    overrides: &[(&str, &str)],
) -> Result<Loaded, ConfigError> {
    let file = ConfigFile {
        text,
        format: Format::Toml,
    };
    load(Some(file), env(env_pairs), &env(overrides))
}

/// The problems of a config that must fail.
fn problems(result: Result<Loaded, ConfigError>) -> Vec<Problem> {
    match result {
        Ok(loaded) => panic!("expected errors, loaded {:#?}", loaded.config),
        Err(e) => e.problems,
    }
}

fn toml_problems(text: &str) -> Vec<Problem> {
    problems(load_toml(text, &[], &[]))
}

fn toml_ok(text: &str) -> Config {
    Config::from_toml(text).unwrap_or_else(|e| panic!("{e}"))
}
