//! TLS against the real registry serving HTTPS with a self-signed certificate: refused
//! without trust, accepted with the CA given (explicitly or in a `certs.d` directory),
//! or with verification off.

use crate::common;

use common::{digest_of, repo_name, tempdir, Pattern, Registry, RegistryConfig};
use strata_registry::{Client, Error, Options, Pushed};

struct TlsRegistry {
    reg: Registry,
    ca: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn tls_registry() -> TlsRegistry {
    let dir = tempdir();
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let reg = Registry::start_with(RegistryConfig {
        tls: Some((cert.clone(), key)),
        ..Default::default()
    });
    TlsRegistry {
        reg,
        ca: cert,
        _dir: dir,
    }
}

fn round_trip(client: &Client) {
    let repo = client.repository(repo_name("strata/tls"));
    let blob = Pattern::new(1 << 20, 5);
    let pushed = blob.push(&repo).unwrap();
    assert!(matches!(pushed, Pushed::Uploaded | Pushed::AlreadyPresent));
    assert_eq!(
        digest_of(repo.get_blob(&blob.digest(), None).unwrap())
            .unwrap()
            .0,
        blob.digest()
    );
}

#[test]
fn untrusted_certificate_is_refused_not_downgraded() {
    let t = tls_registry();
    let client = t.reg.client(Options::default());
    let e = client.ping().unwrap_err();
    let text = format!("{e}");
    assert!(matches!(e, Error::Transport { .. }), "{text}");
    assert!(
        text.starts_with("GET https://"),
        "the TLS failure is reported, not the plain-HTTP probe: {text}"
    );
    assert!(
        text.to_lowercase().contains("certificate") || text.contains("UnknownIssuer"),
        "{text}"
    );
    assert!(!e.is_retryable(), "{text}");
}

#[test]
fn trusted_ca_file_or_certs_dir_verifies() {
    let t = tls_registry();
    let client = t.reg.client(Options {
        ca_certs: vec![t.ca.clone()],
        ..Options::default()
    });
    assert_eq!(
        client.ping().unwrap(),
        format!("https://127.0.0.1:{}", t.reg.port)
    );
    round_trip(&client);

    let certs = tempdir();
    let host_dir = certs.path().join(format!("127.0.0.1:{}", t.reg.port));
    std::fs::create_dir(&host_dir).unwrap();
    std::fs::copy(&t.ca, host_dir.join("ca.crt")).unwrap();
    let client = t.reg.client(Options {
        certs_dirs: vec![certs.path().to_path_buf()],
        ..Options::default()
    });
    round_trip(&client);

    // A CA file that is not one is an error up front.
    let bad = certs.path().join("bad.pem");
    std::fs::write(&bad, "not a certificate").unwrap();
    let e = Client::new(
        t.reg.host(),
        Options {
            ca_certs: vec![bad],
            ..Options::default()
        },
    )
    .err()
    .unwrap();
    assert!(matches!(e, Error::CaCertificate { .. }), "{e}");
}

#[test]
fn tls_verify_false_accepts_the_certificate() {
    let t = tls_registry();
    let client = t.reg.client(Options {
        tls_verify: false,
        ..Options::default()
    });
    assert!(client.ping().unwrap().starts_with("https://"));
    round_trip(&client);
}
