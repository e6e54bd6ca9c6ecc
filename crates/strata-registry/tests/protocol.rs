//! Protocol corners a healthy registry does not show on demand, against a scripted
//! HTTP server: schema 1 manifests, generic content types, 503 storms, 429 with
//! Retry-After, a revoked cached token, a registry that ignores `Range`, relative
//! upload locations, and credentials never leaving the registry's host.

use crate::common;

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::scripted::{Answer, Asked, Scripted};
use common::{digest_bytes, repo_name, Pattern};
use strata_registry::{
    Client, Credentials, Error, ManifestKind, Options, Pushed, Reference, RetryPolicy,
    MANIFEST_LIMIT,
};

fn quick() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 5,
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(50),
    }
}

fn client(server: &Scripted, credentials: Credentials) -> Client {
    Client::new(
        server.host(),
        Options {
            credentials,
            retry: quick(),
            ..Options::default()
        },
    )
    .unwrap()
}

fn ping_ok(req: &Asked) -> Option<Answer> {
    (req.target == "/v2/").then(|| Answer::new(200).body("{}"))
}

const OCI_MANIFEST: &str = r#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;

#[test]
fn schema1_is_refused_clearly() {
    let server = Scripted::start(|req, _| {
        ping_ok(req).unwrap_or_else(|| {
            let ct = if req.target.contains("signed") {
                "application/vnd.docker.distribution.manifest.v1+prettyjws"
            } else {
                "application/json"
            };
            Answer::new(200)
                .header("Content-Type", ct)
                .body(r#"{"schemaVersion":1,"name":"x","tag":"t","fsLayers":[]}"#)
        })
    });
    let repo = client(&server, Credentials::Anonymous).repository(repo_name("old/image"));
    for tag in ["signed", "generic"] {
        let e = repo
            .get_manifest(&Reference::parse(tag).unwrap())
            .unwrap_err();
        assert!(matches!(e, Error::Schema1 { .. }), "{tag}: {e}");
        assert!(
            e.to_string().contains("schema 1") && e.to_string().contains("old/image"),
            "{e}"
        );
        assert!(!e.is_retryable());
    }
    // The Accept list names the four supported types and not schema 1.
    let accept = server
        .asked()
        .iter()
        .find(|a| a.target.contains("/manifests/"))
        .unwrap()
        .header("accept")
        .unwrap()
        .to_string();
    for k in ManifestKind::ALL {
        assert!(accept.contains(k.media_type()), "{accept}");
    }
    assert!(!accept.contains("distribution.manifest.v1"), "{accept}");
}

#[test]
fn generic_content_types_are_sniffed_and_unknown_types_refused() {
    let server = Scripted::start(|req, _| {
        ping_ok(req).unwrap_or_else(|| match req.target.rsplit('/').next().unwrap() {
            "plain" => Answer::new(200)
                .header("Content-Type", "text/plain")
                .body(OCI_MANIFEST),
            "artifact" => Answer::new(200)
                .header(
                    "Content-Type",
                    "application/vnd.oci.artifact.manifest.v1+json",
                )
                .body(r#"{"mediaType":"application/vnd.oci.artifact.manifest.v1+json"}"#),
            "huge" => Answer::new(200)
                .header("Content-Type", ManifestKind::OciManifest.media_type())
                .body(vec![b' '; MANIFEST_LIMIT as usize + 1]),
            _ => Answer::new(200)
                .header("Content-Type", ManifestKind::OciManifest.media_type())
                .header("Docker-Content-Digest", &digest_bytes(b"other").to_string())
                .body(OCI_MANIFEST),
        })
    });
    let repo = client(&server, Credentials::Anonymous).repository(repo_name("r"));
    let m = repo
        .get_manifest(&Reference::parse("plain").unwrap())
        .unwrap();
    assert_eq!(
        (m.kind, m.digest),
        (
            ManifestKind::OciManifest,
            digest_bytes(OCI_MANIFEST.as_bytes())
        )
    );
    let e = repo
        .get_manifest(&Reference::parse("artifact").unwrap())
        .unwrap_err();
    assert!(matches!(e, Error::UnsupportedManifest { .. }), "{e}");
    let e = repo
        .get_manifest(&Reference::parse("huge").unwrap())
        .unwrap_err();
    assert!(matches!(e, Error::ManifestTooLarge { .. }), "{e}");
    let e = repo
        .get_manifest(&Reference::parse("lying").unwrap())
        .unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
    assert!(e.to_string().contains("Docker-Content-Digest"), "{e}");
}

#[test]
fn server_errors_are_retried_then_given_up() {
    let served = Arc::new(AtomicUsize::new(0));
    let s = served.clone();
    let server = Scripted::start(move |req, _| {
        ping_ok(req).unwrap_or_else(|| {
            let n = s.fetch_add(1, Ordering::SeqCst);
            if req.target.ends_with("/flaky") && n < 2 || req.target.ends_with("/down") {
                Answer::new(503)
                    .body(r#"{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}"#)
            } else {
                Answer::new(200)
                    .header("Content-Type", ManifestKind::OciManifest.media_type())
                    .body(OCI_MANIFEST)
            }
        })
    });
    let repo = client(&server, Credentials::Anonymous).repository(repo_name("r"));
    repo.get_manifest(&Reference::parse("flaky").unwrap())
        .unwrap();
    assert_eq!(served.swap(0, Ordering::SeqCst), 3);
    let e = repo
        .get_manifest(&Reference::parse("down").unwrap())
        .unwrap_err();
    assert!(
        matches!(e, Error::RetriesExhausted { attempts: 5, .. }),
        "{e}"
    );
    assert_eq!(served.load(Ordering::SeqCst), 5);
    let last = std::error::Error::source(&e).unwrap().to_string();
    assert!(
        last.contains("503") && last.contains("UNAVAILABLE: try later"),
        "{last}"
    );
}

#[test]
fn too_many_requests_waits_for_retry_after() {
    let server = Scripted::start(|req, i| {
        ping_ok(req).unwrap_or_else(|| {
            if i == 1 {
                Answer::new(429).header("Retry-After", "1")
            } else {
                Answer::new(200)
                    .header("Content-Type", ManifestKind::OciManifest.media_type())
                    .body(OCI_MANIFEST)
            }
        })
    });
    let c = Client::new(
        server.host(),
        Options {
            retry: RetryPolicy {
                max_backoff: Duration::from_secs(5),
                ..quick()
            },
            ..Options::default()
        },
    )
    .unwrap();
    let t = Instant::now();
    c.repository(repo_name("r"))
        .get_manifest(&Reference::parse("t").unwrap())
        .unwrap();
    assert!(t.elapsed() >= Duration::from_secs(1), "{:?}", t.elapsed());
}

#[test]
fn not_found_and_denied_are_not_retried() {
    let server = Scripted::start(|req, _| {
        ping_ok(req).unwrap_or_else(|| {
            if req.target.contains("secret") {
                Answer::new(403).body(r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#)
            } else {
                Answer::new(404).body(r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#)
            }
        })
    });
    let repo = client(&server, Credentials::Anonymous).repository(repo_name("r"));
    assert!(matches!(
        repo.get_manifest(&Reference::parse("x").unwrap()),
        Err(Error::ManifestUnknown { .. })
    ));
    let e = repo
        .get_manifest(&Reference::parse("secret").unwrap())
        .unwrap_err();
    assert!(matches!(e, Error::Denied { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("requested access to the resource is denied"),
        "{e}"
    );
    let manifest_requests = server
        .asked()
        .iter()
        .filter(|a| a.target.contains("/manifests/"))
        .count();
    assert_eq!(manifest_requests, 2);
}

/// A registry that revokes a cached token: the client fetches a new one and asks
/// again, once.
#[test]
fn revoked_cached_token_is_replaced_once() {
    let port = Arc::new(AtomicUsize::new(0));
    let generation = Arc::new(AtomicUsize::new(0));
    let (p, g) = (port.clone(), generation.clone());
    let server = Scripted::start(move |req, _| {
        let current = format!("t{}", g.load(Ordering::SeqCst));
        if req.target.starts_with("/token") {
            return Answer::new(200).body(format!(r#"{{"token":"{current}","expires_in":300}}"#));
        }
        if req.target == "/v2/" || req.header("authorization") != Some(&format!("Bearer {current}"))
        {
            let realm = format!(
                r#"Bearer realm="http://127.0.0.1:{}/token",service="svc""#,
                p.load(Ordering::SeqCst)
            );
            return Answer::new(401)
                .header("WWW-Authenticate", &realm)
                .body("{}");
        }
        Answer::new(200)
            .header("Content-Type", ManifestKind::OciManifest.media_type())
            .body(OCI_MANIFEST)
    });
    port.store(server.port as usize, Ordering::SeqCst);
    let repo = client(&server, Credentials::Anonymous).repository(repo_name("r"));
    let token_requests = || {
        server
            .asked()
            .iter()
            .filter(|a| a.target.starts_with("/token"))
            .count()
    };
    repo.get_manifest(&Reference::parse("a").unwrap()).unwrap();
    repo.get_manifest(&Reference::parse("a").unwrap()).unwrap();
    assert_eq!(token_requests(), 1, "cached");
    generation.store(1, Ordering::SeqCst); // the server revokes t0
    repo.get_manifest(&Reference::parse("b").unwrap()).unwrap();
    assert_eq!(token_requests(), 2);
    let b_requests = server
        .asked()
        .iter()
        .filter(|a| a.target.ends_with("/manifests/b"))
        .count();
    assert_eq!(
        b_requests, 2,
        "one refused with the cached token, one with the new"
    );
}

/// A registry that answers a ranged request with the whole blob: the client skips
/// what it already has.
#[test]
fn resume_copes_with_a_registry_that_ignores_range() {
    let blob = Pattern::new(3 << 20, 77);
    let bytes = Arc::new(blob.to_vec());
    let b = bytes.clone();
    let digest = blob.digest();
    let server = Scripted::start(move |req, _| {
        ping_ok(req).unwrap_or_else(|| {
            let a = Answer::new(200).body(b.to_vec());
            if req.header("range").is_none() {
                a.cut_after(1_000_000)
            } else {
                a
            }
        })
    });
    let repo = client(&server, Credentials::Anonymous).repository(repo_name("r"));
    let mut got = Vec::new();
    repo.get_blob(&digest, Some(blob.size))
        .unwrap()
        .read_to_end(&mut got)
        .unwrap();
    assert!(got == *bytes);
    let ranges: Vec<_> = server
        .asked()
        .iter()
        .filter_map(|a| a.header("range").map(str::to_string))
        .collect();
    assert_eq!(ranges.len(), 1);
    assert!(
        ranges[0].starts_with("bytes=") && ranges[0] != "bytes=0-",
        "{ranges:?}"
    );
}

/// Relative upload locations are resolved against the registry; Basic credentials go
/// to the registry only, never to another host an upload is sent on to.
#[test]
fn uploads_follow_locations_and_keep_credentials_home() {
    let elsewhere = Scripted::start(|req, _| {
        if req.method == "PUT" {
            Answer::new(201)
        } else {
            Answer::new(404)
        }
    });
    let other = elsewhere.port;
    let server = Scripted::start(move |req, _| {
        if req.header("authorization").is_none() {
            return Answer::new(401).header("WWW-Authenticate", r#"Basic realm="r""#);
        }
        match (req.method.as_str(), req.target.as_str()) {
            ("GET", "/v2/") => Answer::new(200),
            ("HEAD", _) => Answer::new(404),
            ("POST", t) if t.contains("/first/") => {
                Answer::new(202).header("Location", "/v2/first/blobs/uploads/u1?_state=s")
            }
            ("POST", _) => {
                Answer::new(202).header("Location", &format!("http://127.0.0.1:{other}/up?x=1"))
            }
            ("PUT", t) if t.starts_with("/v2/first/blobs/uploads/u1?_state=s&digest=sha256%3A") => {
                Answer::new(201)
            }
            _ => Answer::new(400),
        }
    });
    let c = client(
        &server,
        Credentials::Basic {
            username: "u".into(),
            password: "p".into(),
        },
    );
    let blob = Pattern::new(5000, 1);
    let first = c.repository(repo_name("first"));
    assert_eq!(blob.push(&first).unwrap(), Pushed::Uploaded);
    let second = c.repository(repo_name("second"));
    assert_eq!(blob.push(&second).unwrap(), Pushed::Uploaded);
    let away = elsewhere.asked();
    assert_eq!(away.len(), 1);
    assert!(away[0].target.starts_with("/up?x=1&digest="), "{away:?}");
    assert_eq!(
        away[0].header("authorization"),
        None,
        "credentials leaked to another host"
    );
}
