//! Token verification settings, under `client.token` (and `client.subscription_token`) in the
//! configuration, with Centrifugo v6's names, and the rules of a templated
//! `jwks_public_endpoint` that validation checks before `auth` fills it in.

use serde::{Deserialize, Serialize};

/// How tokens are verified. Empty strings mean "not configured".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenSettings {
    /// Secret for HS256/HS384/HS512.
    pub hmac_secret_key: String,
    /// The secret before the last rotation: HS* tokens that fail with `hmac_secret_key` are
    /// checked with it, so tokens issued before the switch keep working.
    pub hmac_previous_secret_key: String,
    /// Unix time (seconds) from which `hmac_previous_secret_key` is no longer accepted;
    /// 0 = until it is removed from the config.
    pub hmac_previous_secret_key_valid_until: i64,
    /// PEM public key for RS256/RS384/RS512.
    pub rsa_public_key: String,
    /// PEM public key for ES256/ES384.
    pub ecdsa_public_key: String,
    /// JWKS URL; when set, every token is verified with the key its `kid` names.
    pub jwks_public_endpoint: String,
    /// Required `aud` claim, when set.
    pub audience: String,
    /// A regular expression one of the `aud` values must match (unanchored, like Go's
    /// `regexp`); instead of `audience`.
    pub audience_regex: String,
    /// Required `iss` claim, when set.
    pub issuer: String,
    /// A regular expression `iss` must match (unanchored); instead of `issuer`.
    pub issuer_regex: String,
    /// Claim holding the user id (default `sub`).
    pub user_id_claim: String,
    /// Allow `{{name}}` placeholders of `jwks_public_endpoint` to come from a named group that
    /// matches open-ended values (`[a-z]+`), not only a fixed list (`acme|globex`).
    pub insecure_skip_jwks_endpoint_safety_check: bool,
}

impl TokenSettings {
    /// The placeholders of `jwks_public_endpoint` filled from a named group that matches
    /// open-ended values, with the key of its regex (`issuer_regex` / `audience_regex`):
    /// Centrifugo's JWKS endpoint safety check, which `insecure_skip_jwks_endpoint_safety_check`
    /// turns off.
    pub fn unsafe_jwks_placeholders(&self) -> Vec<(&str, &'static str)> {
        unsafe_placeholders(
            &self.jwks_public_endpoint,
            &[
                ("issuer_regex", self.issuer_regex.as_str()),
                ("audience_regex", self.audience_regex.as_str()),
            ],
        )
    }
}

/// The names between `{{` and `}}`, in order.
pub fn jwks_placeholders(template: &str) -> impl Iterator<Item = &str> {
    template
        .split("{{")
        .skip(1)
        .filter_map(|rest| rest.split_once("}}"))
        .map(|(name, _)| name.trim())
}

/// The placeholders of `template` whose named group (in `issuer_regex` or `audience_regex`) can
/// capture values nobody listed: a token's issuer would then choose where gyre fetches keys
/// from. Safe groups match a fixed set of strings (`acme|globex`, `eu|us`); `[a-z]+`, `.+`,
/// `\w*` or a class of more than a few characters are not. Each entry is (placeholder, regex
/// key name). A placeholder without any group is not listed here (see `JwksTemplate::new`).
fn unsafe_placeholders<'a>(
    template: &'a str,
    regexes: &[(&'static str, &str)],
) -> Vec<(&'a str, &'static str)> {
    let parsed: Vec<(&'static str, regex_syntax::hir::Hir)> = regexes
        .iter()
        .filter(|(_, pattern)| !pattern.is_empty())
        .filter_map(|(key, pattern)| Some((*key, regex_syntax::parse(pattern).ok()?)))
        .collect();
    let mut out = Vec::new();
    for name in jwks_placeholders(template) {
        for (key, hir) in &parsed {
            if let Some(group) = named_group(hir, name)
                && !fixed_strings(group)
            {
                out.push((name, *key));
            }
        }
    }
    out
}

fn named_group<'h>(
    hir: &'h regex_syntax::hir::Hir,
    name: &str,
) -> Option<&'h regex_syntax::hir::Hir> {
    use regex_syntax::hir::HirKind;
    match hir.kind() {
        HirKind::Capture(capture) if capture.name.as_deref() == Some(name) => Some(&capture.sub),
        HirKind::Capture(capture) => named_group(&capture.sub, name),
        HirKind::Repetition(repetition) => named_group(&repetition.sub, name),
        HirKind::Concat(items) | HirKind::Alternation(items) => {
            items.iter().find_map(|item| named_group(item, name))
        }
        _ => None,
    }
}

/// Whether `hir` matches only strings from a short fixed list.
fn fixed_strings(hir: &regex_syntax::hir::Hir) -> bool {
    use regex_syntax::hir::{Class, HirKind};
    /// `a|b|c` may be written (or parsed) as a class; a longer class is a pattern.
    const MAX_CLASS: usize = 8;
    match hir.kind() {
        HirKind::Empty | HirKind::Literal(_) | HirKind::Look(_) => true,
        HirKind::Class(Class::Unicode(class)) => {
            class.iter().map(|r| r.len()).sum::<usize>() <= MAX_CLASS
        }
        HirKind::Class(Class::Bytes(class)) => {
            class.iter().map(|r| r.len()).sum::<usize>() <= MAX_CLASS
        }
        HirKind::Repetition(_) => false,
        HirKind::Capture(capture) => fixed_strings(&capture.sub),
        HirKind::Concat(items) | HirKind::Alternation(items) => items.iter().all(fixed_strings),
    }
}
