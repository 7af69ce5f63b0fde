//! From the configuration to the engines' settings: the one step of the start that reads the
//! files the configuration names (PEM files) and parses the certificates and keys in them, so
//! that `gyre checkconfig` reports an unreadable file or a broken certificate exactly as the
//! start would, before anything connects.
//!
//! The configuration (`config`) is a leaf that reads no files and the engine knows nothing of
//! the configuration's keys; this module knows both.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::config::{Config, RedisEngine, RedisTls};
use crate::engine::redis::{
    ClientIdentity, NodeOptions, RedisSettings, RedisTopology, Secret, SentinelSettings, TlsOptions,
};

/// The Redis engine's settings for `config.engine.redis`. `Err` lists every problem, one per
/// line, each naming its key.
pub fn redis_settings(config: &Config) -> Result<RedisSettings, String> {
    let redis = &config.engine.redis;
    let mut problems = Vec::new();
    let tls = tls_options("engine.redis.tls", &redis.tls, &mut problems);
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
            tls: tls_options("engine.redis.sentinel_tls", &redis.sentinel_tls, problems),
        });
    }
    RedisTopology::Standalone {
        addresses: redis.address.clone(),
    }
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

/// The TLS options of the table at `path`, with every PEM read and parsed.
fn tls_options(path: &str, tls: &RedisTls, problems: &mut Vec<String>) -> TlsOptions {
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

/// The PEM bytes of `<path>.<name>` from whichever of its three keys is set (inline, `_file`,
/// `_b64`), with a label for messages: the key it came from, quoted, and the file.
fn pem(
    path: &str,
    name: &str,
    [inline, file, b64]: [&String; 3],
    problems: &mut Vec<String>,
) -> Option<(String, Vec<u8>)> {
    if !inline.is_empty() {
        return Some((format!("`{path}.{name}`"), inline.as_bytes().to_vec()));
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
}
