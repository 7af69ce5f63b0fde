//! Certificates for the TLS tests, made with the `openssl` command in a temporary directory: a
//! CA, server certificates signed by it (one for 127.0.0.1 and `localhost`, one only for a DNS
//! name), a client certificate, and an unrelated CA that trusts none of them. EC P-256 keys, so
//! that making them takes milliseconds.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::server::{RedisServer, ServerBuilder, free_port};

/// The name [`TestPki::named_server`] is issued for (and nothing else: no IP).
pub const TLS_SERVER_NAME: &str = "redis.gyre.test";

/// A CA and certificates signed by it; files live as long as this value.
pub struct TestPki {
    dir: tempfile::TempDir,
}

/// A certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertFiles {
    pub fn cert_pem(&self) -> String {
        std::fs::read_to_string(&self.cert).expect("read certificate")
    }

    pub fn key_pem(&self) -> String {
        std::fs::read_to_string(&self.key).expect("read key")
    }
}

impl TestPki {
    /// Makes every certificate; panics with openssl's output when it fails.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("gyre-pki-")
            .tempdir()
            .expect("create temp dir");
        let pki = Self { dir };
        pki.ca("ca", "gyre test CA");
        pki.ca("other-ca", "unrelated test CA");
        pki.leaf(
            "server",
            "redis test server",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth",
        );
        pki.leaf(
            "named-server",
            TLS_SERVER_NAME,
            &format!("subjectAltName=DNS:{TLS_SERVER_NAME}\nextendedKeyUsage=serverAuth"),
        );
        pki.leaf("client", "gyre test client", "extendedKeyUsage=clientAuth");
        pki
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA that signed every certificate below.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir().join("ca.crt")
    }

    /// A CA that signed none of them.
    pub fn other_ca_cert(&self) -> PathBuf {
        self.dir().join("other-ca.crt")
    }

    /// Valid for IP 127.0.0.1 and `localhost`.
    pub fn server(&self) -> CertFiles {
        self.files("server")
    }

    /// Valid for [`TLS_SERVER_NAME`] only.
    pub fn named_server(&self) -> CertFiles {
        self.files("named-server")
    }

    /// A client certificate for servers with `tls-auth-clients yes`.
    pub fn client(&self) -> CertFiles {
        self.files("client")
    }

    fn files(&self, name: &str) -> CertFiles {
        CertFiles {
            cert: self.dir().join(format!("{name}.crt")),
            key: self.dir().join(format!("{name}.key")),
        }
    }

    fn ca(&self, name: &str, subject: &str) {
        openssl(
            self.dir(),
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.crt"),
                "-days",
                "2",
                "-subj",
                &format!("/CN={subject}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
    }

    fn leaf(&self, name: &str, subject: &str, extensions: &str) {
        let ext = format!("{name}.ext");
        std::fs::write(
            self.dir().join(&ext),
            format!("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n{extensions}\n"),
        )
        .expect("write extensions");
        openssl(
            self.dir(),
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={subject}"),
            ],
        );
        openssl(
            self.dir(),
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.crt"),
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
    }

    /// A Redis with the module that speaks only TLS, on a free port of 127.0.0.1, presenting
    /// `server`; with `require_client_cert`, clients must present a certificate of this CA.
    pub fn redis(&self, server: &CertFiles, require_client_cert: bool) -> (RedisServer, u16) {
        let port = free_port();
        let redis = ServerBuilder::default()
            .args(&[
                "--tls-port",
                &port.to_string(),
                "--tls-cert-file",
                path(&server.cert),
                "--tls-key-file",
                path(&server.key),
                "--tls-ca-cert-file",
                path(&self.ca_cert()),
                "--tls-auth-clients",
                if require_client_cert { "yes" } else { "no" },
            ])
            .start();
        (redis, port)
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("run openssl (is it installed?): {e}"));
    assert!(
        output.status.success(),
        "openssl {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
