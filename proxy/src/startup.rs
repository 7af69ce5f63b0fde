//! From the configuration to the engines' and the backend hooks' settings: the one step of the
//! start that reads the files the configuration names (PEM files) and parses the certificates
//! and keys in them, so that `gyre checkconfig` reports an unreadable file or a broken
//! certificate exactly as the start would, before anything connects.
//!
//! The configuration (`config`) is a leaf that reads no files and the engine knows nothing of
//! the configuration's keys; this module knows both. Every TLS object of the config (Redis,
//! sentinels, each proxy's `http.tls` and `grpc.tls`) goes through the same [`tls_options`].

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::config::{Config, Proxy, RedisEngine, TlsConfig};
use crate::engine::redis::{NodeOptions, RedisSettings, RedisTopology, SentinelSettings};
use crate::tls::{ClientIdentity, Secret, TlsOptions};

/// The Redis engine's settings for `config.engine.redis`. `Err` lists every problem, one per
/// line, each naming its key.
pub fn redis_settings(config: &Config) -> Result<RedisSettings, String> {
    let redis = &config.engine.redis;
    let mut problems = Vec::new();
    let tls = collect_tls_options("engine.redis.tls", &redis.tls, &mut problems);
    let topology = topology(redis, &mut problems);
    if !problems.is_empty() {
        return Err(problems.join("\n"));
    }
    Ok(RedisSettings {
        topology,
        nodes: NodeOptions {
            user: non_empty(&redis.user),
            password: non_empty(&redis.password).map(Secret::new),
            db: redis.db,
            tls,
            connect_timeout: redis.connect_timeout,
            io_timeout: redis.io_timeout,
        },
        prefix: redis.prefix.clone(),
        presence_ttl: redis.presence_ttl,
    })
}

/// What the operator should hear at start about `engine.redis`, though it is valid.
pub fn redis_warnings(config: &Config) -> Vec<String> {
    let redis = &config.engine.redis;
    let mut warnings = Vec::new();
    for (path, tls) in [
        ("engine.redis.tls", &redis.tls),
        ("engine.redis.sentinel_tls", &redis.sentinel_tls),
    ] {
        if tls.insecure_skip_verify {
            warnings.push(format!(
                "{path}.insecure_skip_verify is on: Redis TLS certificates are not checked, so \
                 anyone on the network path can pose as the server. Use it for development only."
            ));
        }
        client_ca_warning(path, tls, &mut warnings);
    }
    warnings
}

fn client_ca_warning(path: &str, tls: &TlsConfig, warnings: &mut Vec<String>) {
    if tls.has_client_ca() {
        warnings.push(format!(
            "{path}.client_ca_pem is ignored: it is for TLS servers checking client \
             certificates, and gyre is the client of this connection"
        ));
    }
}

/// Every configured proxy object: its key path and the object.
fn proxies(config: &Config) -> Vec<(String, &Proxy)> {
    let client = &config.client.proxy;
    let channel = &config.channel.proxy;
    let mut out = vec![
        ("client.proxy.connect".to_owned(), &client.connect.proxy),
        ("client.proxy.refresh".to_owned(), &client.refresh.proxy),
        ("channel.proxy.subscribe".to_owned(), &channel.subscribe),
        ("channel.proxy.publish".to_owned(), &channel.publish),
        ("channel.proxy.sub_refresh".to_owned(), &channel.sub_refresh),
        ("rpc.proxy".to_owned(), &config.rpc.proxy),
    ];
    for (i, named) in config.proxies.iter().enumerate() {
        out.push((format!("proxies[{i}]"), &named.proxy));
    }
    out.retain(|(_, proxy)| proxy.is_configured());
    out
}

/// The TLS table a proxy object's endpoint uses (`http.tls` or `grpc.tls`), with its key path;
/// `None` for a plain `http://` endpoint.
pub fn proxy_tls<'a>(path: &str, proxy: &'a Proxy) -> Option<(String, &'a TlsConfig)> {
    if proxy.endpoint.starts_with("grpc://") {
        Some((format!("{path}.grpc.tls"), &proxy.grpc.tls))
    } else if proxy.endpoint.starts_with("https://") {
        Some((format!("{path}.http.tls"), &proxy.http.tls))
    } else {
        None
    }
}

/// What `checkconfig` and the start check of the proxies beyond the config itself: the TLS of
/// each configured proxy, its PEM files read and a client built from them as the hooks will.
/// `Err` lists every problem, one per line.
pub fn check_proxies(config: &Config) -> Result<(), String> {
    let mut problems = Vec::new();
    for (path, proxy) in proxies(config) {
        let Some((key, tls)) = proxy_tls(&path, proxy) else {
            continue;
        };
        if !tls.enabled {
            continue;
        }
        let before = problems.len();
        let options = collect_tls_options(&key, tls, &mut problems);
        if problems.len() == before
            && let Err(e) = crate::tls::client_config(&options, &[])
        {
            problems.push(format!("`{key}`: {e}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// What the operator should hear at start about the proxies, though the config is valid:
/// options Gyre accepts without effect (Centrifugo PRO's `cache_empty` and `state` proxies,
/// TLS settings that no connection uses) and certificates that are not checked.
pub fn proxy_warnings(config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    for (path, proxy) in proxies(config) {
        let used = proxy_tls(&path, proxy).map(|(key, _)| key);
        for (key, tls) in [
            (format!("{path}.http.tls"), &proxy.http.tls),
            (format!("{path}.grpc.tls"), &proxy.grpc.tls),
        ] {
            if !tls.enabled && !tls.has_settings() {
                continue;
            }
            if used.as_deref() != Some(key.as_str()) {
                warnings.push(format!(
                    "{key} is ignored: the endpoint {} does not use it",
                    proxy.endpoint
                ));
            } else if !tls.enabled {
                warnings.push(format!(
                    "{key} has settings but enabled = false: they are not used (set \
                     {key}.enabled = true to use them)"
                ));
            } else {
                if tls.insecure_skip_verify {
                    warnings.push(format!(
                        "{key}.insecure_skip_verify is on: the backend's certificate is not \
                         checked, so anyone on the network path can pose as it. Use it for \
                         development only."
                    ));
                }
                client_ca_warning(&key, tls, &mut warnings);
            }
        }
        if proxy.grpc.compression && !proxy.endpoint.starts_with("grpc://") {
            warnings.push(format!(
                "{path}.grpc.compression is ignored: the endpoint {} is not grpc://",
                proxy.endpoint
            ));
        }
    }
    let channel = &config.channel.proxy;
    for (event, proxy) in [
        ("cache_empty", &channel.cache_empty),
        ("state", &channel.state),
    ] {
        if proxy.is_configured() {
            warnings.push(format!(
                "channel.proxy.{event} is ignored: the {event} proxy is a Centrifugo PRO \
                 feature that Gyre does not have"
            ));
        }
    }
    let namespaces = std::iter::once((
        "channel.without_namespace".to_owned(),
        config.channel.without_namespace.clone(),
    ))
    .chain(
        config
            .channel
            .namespaces
            .iter()
            .enumerate()
            .map(|(i, ns)| (format!("channel.namespaces[{i}]"), ns.options())),
    );
    for (path, options) in namespaces {
        for (on, key) in [
            (
                options.cache_empty_proxy_enabled,
                "cache_empty_proxy_enabled",
            ),
            (options.state_proxy_enabled, "state_proxy_enabled"),
        ] {
            if on {
                warnings.push(format!(
                    "{path}.{key} is ignored: a Centrifugo PRO feature that Gyre does not have"
                ));
            }
        }
    }
    warnings
}

fn topology(redis: &RedisEngine, problems: &mut Vec<String>) -> RedisTopology {
    if !redis.cluster_address.is_empty() {
        let shards = redis
            .cluster_address
            .iter()
            .map(|cluster| {
                cluster
                    .split(',')
                    .map(str::trim)
                    .filter(|seed| !seed.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .collect();
        return RedisTopology::Cluster { shards };
    }
    if !redis.sentinel_address.is_empty() {
        return RedisTopology::Sentinel(SentinelSettings {
            addresses: redis.sentinel_address.clone(),
            master_name: redis.sentinel_master_name.clone(),
            user: non_empty(&redis.sentinel_user),
            password: non_empty(&redis.sentinel_password).map(Secret::new),
            tls: collect_tls_options("engine.redis.sentinel_tls", &redis.sentinel_tls, problems),
        });
    }
    RedisTopology::Standalone {
        addresses: redis.address.clone(),
    }
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

/// The TLS options of the table at `path`, with every PEM read and parsed. `Err` lists every
/// problem, one per line, each naming its key.
pub fn tls_options(path: &str, tls: &TlsConfig) -> Result<TlsOptions, String> {
    let mut problems = Vec::new();
    let options = collect_tls_options(path, tls, &mut problems);
    if problems.is_empty() {
        Ok(options)
    } else {
        Err(problems.join("\n"))
    }
}

fn collect_tls_options(path: &str, tls: &TlsConfig, problems: &mut Vec<String>) -> TlsOptions {
    let ca_pem = pem(
        path,
        "server_ca_pem",
        [
            &tls.server_ca_pem,
            &tls.server_ca_pem_file,
            &tls.server_ca_pem_b64,
        ],
        problems,
    );
    if let Some((label, pem)) = &ca_pem {
        trust_anchors(label, pem, problems);
    }
    let cert = pem(
        path,
        "cert_pem",
        [&tls.cert_pem, &tls.cert_pem_file, &tls.cert_pem_b64],
        problems,
    );
    let key = pem(
        path,
        "key_pem",
        [&tls.key_pem, &tls.key_pem_file, &tls.key_pem_b64],
        problems,
    );
    if let (Some((cert_label, cert_pem)), Some((key_label, key_pem))) = (&cert, &key) {
        identity(cert_label, cert_pem, key_label, key_pem, problems);
    }
    let server_name = non_empty(&tls.server_name);
    if let Some(name) = &server_name
        && ServerName::try_from(name.as_str()).is_err()
    {
        problems.push(format!(
            "`{path}.server_name` = {name:?}: not a DNS name or an IP address"
        ));
    }
    let client_identity = match (cert, key) {
        (Some((_, cert_pem)), Some((_, key_pem))) => Some(ClientIdentity {
            cert_pem,
            key_pem: Secret::new(String::from_utf8_lossy(&key_pem).into_owned()),
        }),
        // Validation already refused one without the other.
        _ => None,
    };
    TlsOptions {
        enabled: tls.enabled,
        ca_pem: ca_pem.map(|(_, pem)| pem),
        client_identity,
        server_name,
        insecure_skip_verify: tls.insecure_skip_verify,
    }
}

/// The PEM bytes of `<path>.<name>` from whichever of its three keys is set (the plain key,
/// `_file`, `_b64`), with a label for messages: the key it came from, quoted, and the file.
/// The plain key holds PEM text, base64 of it, or a file's path (Centrifugo v6's PEM fields).
fn pem(
    path: &str,
    name: &str,
    [inline, file, b64]: [&String; 3],
    problems: &mut Vec<String>,
) -> Option<(String, Vec<u8>)> {
    if !inline.is_empty() {
        let key = format!("{path}.{name}");
        if inline.contains("-----BEGIN ") {
            return Some((format!("`{key}`"), inline.as_bytes().to_vec()));
        }
        let compact: String = inline.split_whitespace().collect();
        if let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(&compact)
            && String::from_utf8_lossy(&decoded).contains("-----BEGIN ")
        {
            return Some((format!("`{key}` (base64)"), decoded));
        }
        return match std::fs::read(Path::new(inline)) {
            Ok(bytes) => Some((format!("`{key}` ({inline})"), bytes)),
            Err(e) => {
                problems.push(format!(
                    "`{key}`: neither PEM text, nor base64 of it, nor a readable file: cannot \
                     read {inline:?}: {e}"
                ));
                None
            }
        };
    }
    if !file.is_empty() {
        let key = format!("{path}.{name}_file");
        return match std::fs::read(Path::new(file)) {
            Ok(bytes) => Some((format!("`{key}` ({file})"), bytes)),
            Err(e) => {
                problems.push(format!("`{key}`: cannot read {file}: {e}"));
                None
            }
        };
    }
    if !b64.is_empty() {
        let key = format!("{path}.{name}_b64");
        let compact: String = b64.split_whitespace().collect();
        return match base64::engine::general_purpose::STANDARD.decode(compact) {
            Ok(bytes) => Some((format!("`{key}`"), bytes)),
            Err(e) => {
                problems.push(format!("`{key}`: not valid base64 ({e})"));
                None
            }
        };
    }
    None
}

/// The certificates of `pem` (from `label`); at least one.
fn certificates(
    label: &str,
    pem: &[u8],
    problems: &mut Vec<String>,
) -> Vec<CertificateDer<'static>> {
    match CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>() {
        Ok(certs) if certs.is_empty() => {
            problems.push(format!("{label}: no PEM certificate in it"));
            certs
        }
        Ok(certs) => certs,
        Err(e) => {
            problems.push(format!("{label}: not a PEM certificate ({e})"));
            Vec::new()
        }
    }
}

/// Checks that every certificate of `pem` can be trusted as a CA.
fn trust_anchors(label: &str, pem: &[u8], problems: &mut Vec<String>) {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(label, pem, problems) {
        if let Err(e) = roots.add(cert) {
            problems.push(format!("{label}: not a usable CA certificate ({e})"));
        }
    }
}

/// Checks that the client certificate and key parse and belong together, the way the TLS
/// handshake will use them. The key's text never goes into a message.
fn identity(
    cert_label: &str,
    cert_pem: &[u8],
    key_label: &str,
    key_pem: &[u8],
    problems: &mut Vec<String>,
) {
    let chain = certificates(cert_label, cert_pem, problems);
    let key = match PrivateKeyDer::from_pem_slice(key_pem) {
        Ok(key) => key,
        Err(e) => {
            problems.push(format!("{key_label}: no PEM private key in it ({e})"));
            return;
        }
    };
    if chain.is_empty() {
        return;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let checked = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|builder| {
            builder
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_client_auth_cert(chain, key)
        });
    match checked {
        Ok(Ok(_)) => {}
        Ok(Err(e)) | Err(e) => problems.push(format!(
            "{key_label}: not a usable private key for the certificate of {cert_label} ({e})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml: &str) -> Config {
        Config::from_toml(toml).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn topologies() {
        let standalone = redis_settings(&config(
            "[engine.redis]\naddress = [\"redis://a:1\", \"redis://b:2\"]\nuser = \"u\"\npassword = \"p\"\ndb = 2",
        ))
        .unwrap();
        assert_eq!(
            standalone.topology,
            RedisTopology::Standalone {
                addresses: vec!["redis://a:1".into(), "redis://b:2".into()]
            }
        );
        assert_eq!(standalone.nodes.user.as_deref(), Some("u"));
        assert_eq!(standalone.nodes.password, Some(Secret::new("p")));
        assert_eq!(standalone.nodes.db, 2);

        let sentinel = redis_settings(&config(
            "[engine.redis]\nsentinel_address = [\"s1:26379\", \"s2:26379\"]\nsentinel_master_name = \"m\"\nsentinel_password = \"sp\"",
        ))
        .unwrap();
        let RedisTopology::Sentinel(s) = sentinel.topology else {
            panic!("not sentinel")
        };
        assert_eq!(s.addresses, ["s1:26379", "s2:26379"]);
        assert_eq!(s.master_name, "m");
        assert_eq!(s.password, Some(Secret::new("sp")));
        assert_eq!(s.user, None);

        let cluster = redis_settings(&config(
            "[engine.redis]\ncluster_address = [\"a:7000, b:7001\", \"c:7000\"]",
        ))
        .unwrap();
        assert_eq!(
            cluster.topology,
            RedisTopology::Cluster {
                shards: vec![
                    vec!["a:7000".into(), "b:7001".into()],
                    vec!["c:7000".into()]
                ]
            }
        );
    }

    #[test]
    fn missing_pem_file_names_key_and_file() {
        let err = redis_settings(&config(
            "[engine.redis.tls]\nenabled = true\nserver_ca_pem_file = \"/nonexistent/ca.pem\"",
        ))
        .unwrap_err();
        assert!(err.contains("engine.redis.tls.server_ca_pem_file"), "{err}");
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn bad_key_is_reported_without_its_text() {
        let key =
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END PRIVATE KEY-----\n";
        let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let toml = format!(
            "[engine.redis.tls]\nenabled = true\ncert_pem = {cert:?}\nkey_pem_b64 = {:?}",
            base64::engine::general_purpose::STANDARD.encode(key)
        );
        let err = redis_settings(&config(&toml)).unwrap_err();
        assert!(err.contains("engine.redis.tls.key_pem_b64"), "{err}");
        assert!(!err.contains("c2VjcmV0"), "{err}");
    }

    #[test]
    fn bad_server_name_and_insecure_warning() {
        let err = redis_settings(&config(
            "[engine.redis.tls]\nenabled = true\nserver_name = \"not a name\"",
        ))
        .unwrap_err();
        assert!(err.contains("engine.redis.tls.server_name"), "{err}");

        let insecure = config("[engine.redis.tls]\nenabled = true\ninsecure_skip_verify = true");
        let warnings = redis_warnings(&insecure);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("engine.redis.tls.insecure_skip_verify"));
        assert!(redis_warnings(&Config::default()).is_empty());
    }

    #[test]
    fn pem_keys_take_text_base64_or_a_file_path() {
        let pki = gyre_tests::TestPki::new();
        let path = pki.ca_cert();
        let text = std::fs::read_to_string(&path).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&text);
        for value in [text.clone(), b64, path.display().to_string()] {
            let tls = TlsConfig {
                enabled: true,
                server_ca_pem: value.clone(),
                ..TlsConfig::default()
            };
            let options = tls_options("x.tls", &tls).unwrap_or_else(|e| panic!("{value}: {e}"));
            assert_eq!(options.ca_pem.as_deref(), Some(text.as_bytes()), "{value}");
        }
        let client = pki.client();
        let tls = TlsConfig {
            enabled: true,
            cert_pem: client.cert.display().to_string(),
            key_pem: "/nonexistent/client.key".into(),
            ..TlsConfig::default()
        };
        let err = tls_options("x.tls", &tls).unwrap_err();
        assert!(
            err.starts_with("`x.tls.key_pem`: neither PEM text, nor base64 of it, nor a readable"),
            "{err}"
        );
        assert!(err.contains("/nonexistent/client.key"), "{err}");
    }

    #[test]
    fn proxy_tls_is_read_by_checkconfig_and_warned_about() {
        let bad_ca = config(
            "[client.proxy.connect]\nenabled = true\nendpoint = \"grpc://127.0.0.1:1\"\n\
             [client.proxy.connect.grpc.tls]\nenabled = true\nserver_ca_pem_file = \"/nonexistent/ca.pem\"",
        );
        let err = check_proxies(&bad_ca).unwrap_err();
        assert!(
            err.contains("`client.proxy.connect.grpc.tls.server_ca_pem_file`: cannot read"),
            "{err}"
        );
        assert!(check_proxies(&Config::default()).is_ok());

        let warned = config(
            r#"
[client.proxy.connect]
enabled = true
endpoint = "https://backend.test/connect"
[client.proxy.connect.http.tls]
enabled = true
insecure_skip_verify = true
client_ca_pem = "unused"
[client.proxy.connect.grpc.tls]
enabled = true
[rpc.proxy]
endpoint = "grpc://127.0.0.1:1"
[rpc.proxy.grpc.tls]
server_name = "backend.test"
[channel.proxy.cache_empty]
endpoint = "http://127.0.0.1:1/cache_empty"
[channel.proxy.state]
endpoint = "http://127.0.0.1:1/state"
[[channel.namespaces]]
name = "chat"
cache_empty_proxy_enabled = true
state_proxy_enabled = true
"#,
        );
        let warnings = proxy_warnings(&warned);
        for expected in [
            "client.proxy.connect.http.tls.insecure_skip_verify is on",
            "client.proxy.connect.http.tls.client_ca_pem is ignored",
            "client.proxy.connect.grpc.tls is ignored: the endpoint https://backend.test/connect",
            "rpc.proxy.grpc.tls has settings but enabled = false",
            "channel.proxy.cache_empty is ignored",
            "channel.proxy.state is ignored",
            "channel.namespaces[0].cache_empty_proxy_enabled is ignored",
            "channel.namespaces[0].state_proxy_enabled is ignored",
        ] {
            assert!(
                warnings.iter().any(|w| w.starts_with(expected)),
                "no {expected:?} in {warnings:#?}"
            );
        }
        assert_eq!(warnings.len(), 8, "{warnings:#?}");
        assert!(proxy_warnings(&Config::default()).is_empty());
    }
}
