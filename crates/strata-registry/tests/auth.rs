//! Authentication against the real registry: htpasswd Basic auth, and distribution's
//! bearer-token auth with a token server written here (tokens per scope, cached,
//! renewed when they expire, refresh tokens, cross-repository scopes).

use crate::common;

use std::io::Cursor;
use std::time::Duration;

use common::token::{Policy, TokenServer};
use common::{digest_of, repo_name, tempdir, Auth, Pattern, Registry, RegistryConfig, Wire};
use strata_registry::{
    AuthFileFormat, AuthFiles, Credentials, Error, ManifestKind, Options, PushOptions, Pushed,
    Reference,
};

fn basic(user: &str, pass: &str) -> Credentials {
    Credentials::Basic {
        username: user.into(),
        password: pass.into(),
    }
}

fn manifest_for(config: &[u8]) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[]}}"#,
        common::digest_bytes(config),
        config.len()
    )
    .into_bytes()
}

/// Pushes a config blob and a manifest naming it under `tag`, then reads both back.
fn push_and_pull(repo: &strata_registry::Repository, tag: &str) {
    let config = format!(r#"{{"os":"linux","tag":"{tag}"}}"#).into_bytes();
    let d = common::digest_bytes(&config);
    repo.push_blob(
        &d,
        config.len() as u64,
        Cursor::new(&config),
        PushOptions::default(),
    )
    .unwrap();
    let manifest = manifest_for(&config);
    let reference = Reference::parse(tag).unwrap();
    repo.put_manifest(&reference, ManifestKind::OciManifest, &manifest)
        .unwrap();
    assert_eq!(repo.get_manifest(&reference).unwrap().bytes, manifest);
    assert_eq!(
        digest_of(repo.get_blob(&d, Some(config.len() as u64)).unwrap())
            .unwrap()
            .0,
        d
    );
}

#[test]
fn htpasswd_basic_auth() {
    let reg = Registry::start_with(RegistryConfig {
        auth: Auth::Htpasswd(vec![("alice".into(), "s3cret:x".into())]),
        tls: None,
    });
    let wire = Wire::default();
    let ok = reg
        .client(Options {
            credentials: basic("alice", "s3cret:x"),
            ..wire.options()
        })
        .repository(repo_name("strata/basic"));
    push_and_pull(&ok, "v1");
    let ping = &wire.all()[1];
    assert_eq!(
        (ping.method.as_str(), ping.status),
        ("GET", Some(401)),
        "{}",
        wire.dump()
    );

    // Wrong password: refused once, not retried, and the password is not in the message.
    let wire = Wire::default();
    let bad = reg
        .client(Options {
            credentials: basic("alice", "wrong-pw"),
            ..wire.options()
        })
        .repository(repo_name("strata/basic"));
    let e = bad
        .get_manifest(&Reference::parse("v1").unwrap())
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Unauthorized {
                anonymous: false,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        !e.is_retryable() && !e.to_string().contains("wrong-pw"),
        "{e}"
    );
    assert_eq!(wire.count("GET", "/manifests/"), 1, "{}", wire.dump());

    // No credentials: the message says how to give some.
    let anon = reg
        .client(Options::default())
        .repository(repo_name("strata/basic"));
    let e = anon.stat_blob(&common::digest_bytes(b"x")).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Unauthorized {
                anonymous: true,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("--creds"), "{e}");

    // The same credentials found in a containers auth.json.
    let dir = tempdir();
    let file = dir.path().join("auth.json");
    std::fs::write(
        &file,
        r#"{"auths":{"HOST":{"auth":"YWxpY2U6czNjcmV0Ong="}}}"#
            .replace("HOST", reg.host().as_str()),
    )
    .unwrap();
    let creds = AuthFiles::new([(file, AuthFileFormat::Containers)])
        .lookup(&reg.host(), None)
        .unwrap();
    assert_eq!(creds, basic("alice", "s3cret:x"));
    let from_file = reg.client(Options {
        credentials: creds,
        ..Options::default()
    });
    from_file
        .repository(repo_name("strata/basic"))
        .get_manifest(&Reference::parse("v1").unwrap())
        .unwrap();
}

fn token_registry(policy: Policy) -> (TokenServer, Registry, tempfile::TempDir) {
    let dir = tempdir();
    let tokens = TokenServer::start(dir.path(), policy);
    let reg = Registry::start_with(RegistryConfig {
        auth: tokens.auth(),
        tls: None,
    });
    (tokens, reg, dir)
}

/// One token per scope, fetched once and reused; pushing takes `pull,push`.
#[test]
fn bearer_tokens_per_scope_are_cached() {
    let (tokens, reg, _dir) = token_registry(Policy::default());
    let wire = Wire::default();
    let client = reg.client(Options {
        credentials: basic("alice", "wonderland"),
        ..wire.options()
    });
    let repo = client.repository(repo_name("strata/token"));
    push_and_pull(&repo, "v1");
    let seen = tokens.seen();
    let scopes: Vec<_> = seen.iter().map(|s| s.scopes.join(" ")).collect();
    assert_eq!(
        scopes,
        [
            "repository:strata/token:pull,push",
            "repository:strata/token:pull"
        ],
        "{seen:?}"
    );
    assert!(seen
        .iter()
        .all(|s| s.account.as_deref() == Some("alice") && s.method == "GET"));
    assert!(seen
        .iter()
        .all(|s| s.service.as_deref() == Some(common::token::SERVICE)));

    // More requests with a cached token: no new token requests.
    for _ in 0..3 {
        repo.get_manifest(&Reference::parse("v1").unwrap()).unwrap();
    }
    assert_eq!(tokens.seen().len(), 2);
    // A clone of the client shares the cache.
    client
        .clone()
        .repository(repo_name("strata/token"))
        .get_manifest(&Reference::parse("v1").unwrap())
        .unwrap();
    assert_eq!(tokens.seen().len(), 2);
}

#[test]
fn expired_tokens_are_renewed() {
    let (tokens, reg, _dir) = token_registry(Policy {
        expires_in: 2,
        ..Policy::default()
    });
    let repo = reg
        .client(Options {
            credentials: basic("alice", "wonderland"),
            ..Options::default()
        })
        .repository(repo_name("strata/renew"));
    let b = Pattern::new(1000, 1);
    b.push(&repo).unwrap();
    repo.stat_blob(&b.digest()).unwrap();
    assert_eq!(tokens.seen().len(), 2);
    std::thread::sleep(Duration::from_millis(1800));
    repo.stat_blob(&b.digest()).unwrap();
    assert_eq!(tokens.seen().len(), 3, "{:?}", tokens.seen());
}

#[test]
fn token_server_refusals_are_clear_and_final() {
    let (tokens, reg, _dir) = token_registry(Policy::default());
    let tag = Reference::parse("v1").unwrap();
    let wrong = reg
        .client(Options {
            credentials: basic("alice", "nope"),
            ..Options::default()
        })
        .repository(repo_name("strata/t"));
    let e = wrong.get_manifest(&tag).unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e}");
    assert!(e.to_string().contains("token server"), "{e}");
    assert_eq!(tokens.seen().len(), 1, "not retried");

    // Anonymous, on a server that gives anonymous users nothing.
    let anon = reg
        .client(Options::default())
        .repository(repo_name("strata/t"));
    let e = anon.get_manifest(&tag).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Unauthorized {
                anonymous: true,
                ..
            }
        ),
        "{e}"
    );
}

/// A token without push (the server grants pull only) makes the push fail with the
/// registry's insufficient-scope answer, once.
#[test]
fn push_without_push_rights_is_refused() {
    let (tokens, reg, _dir) = token_registry(Policy {
        push: false,
        ..Policy::default()
    });
    let wire = Wire::default();
    let repo = reg
        .client(Options {
            credentials: basic("alice", "wonderland"),
            ..wire.options()
        })
        .repository(repo_name("strata/readonly"));
    let b = Pattern::new(1000, 2);
    let e = b.push(&repo).unwrap_err();
    match &e {
        Error::Unauthorized { errors, scope, .. } | Error::Denied { errors, scope, .. } => {
            assert!(
                scope.contains("repository:strata/readonly:pull,push"),
                "{e}"
            );
            assert!(!errors.0.is_empty(), "{e}");
        }
        _ => panic!("{e}"),
    }
    // The refusal of the cached token is answered once with a fresh one, then final.
    assert_eq!(tokens.seen().len(), 2, "{:?}", tokens.seen());
    assert_eq!(wire.count("POST", "/blobs/uploads/"), 2, "{}", wire.dump());
    assert_eq!(
        wire.count("PUT", "/blobs/uploads/") + wire.count("PATCH", "/blobs/uploads/"),
        0
    );
}

#[test]
fn mount_asks_for_both_repositories() {
    let (tokens, reg, _dir) = token_registry(Policy::default());
    let client = reg.client(Options {
        credentials: basic("alice", "wonderland"),
        ..Options::default()
    });
    let b = Pattern::new(300_000, 3);
    let a = client.repository(repo_name("strata/src"));
    assert_eq!(b.push(&a).unwrap(), Pushed::Uploaded);
    let from = repo_name("strata/src");
    let dst = client.repository(repo_name("strata/dst"));
    let got = b.push_mounting(&dst, &from).unwrap();
    assert_eq!(got, Pushed::Mounted);
    let last = tokens.seen().pop().unwrap();
    assert_eq!(
        last.scopes,
        [
            "repository:strata/dst:pull,push",
            "repository:strata/src:pull"
        ]
    );
}

/// An identity token (OAuth2 refresh token, as `docker login` stores for some
/// registries) is exchanged with a POST.
#[test]
fn identity_tokens_use_the_oauth2_refresh_grant() {
    let (tokens, reg, _dir) = token_registry(Policy {
        refresh_token: Some("refresh-me".into()),
        ..Policy::default()
    });
    let repo = reg
        .client(Options {
            credentials: Credentials::IdentityToken("refresh-me".into()),
            ..Options::default()
        })
        .repository(repo_name("strata/oauth"));
    push_and_pull(&repo, "v1");
    let seen = tokens.seen();
    assert!(
        !seen.is_empty()
            && seen
                .iter()
                .all(|s| s.method == "POST" && s.account.as_deref() == Some("refresh-user"))
    );

    let bad = reg
        .client(Options {
            credentials: Credentials::IdentityToken("stale".into()),
            ..Options::default()
        })
        .repository(repo_name("strata/oauth"));
    let e = bad
        .get_manifest(&Reference::parse("v1").unwrap())
        .unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e}");
}
