//! Blobs and manifests through a real registry (Debian's docker-registry, distribution
//! 2.8) and back: small and big blobs, one-PUT and chunked uploads, HEAD skipping,
//! cross-repository mounts, and the errors for what is missing or wrong.

use crate::common;

use std::io::{Cursor, Read};

use common::{digest_bytes, digest_of, repo_name, Pattern, Registry, Wire};
use strata_registry::{
    Digest, Error, ManifestKind, Options, PushOptions, Pushed, Reference, UploadPolicy,
};

const MIB: u64 = 1 << 20;

fn oci_manifest(config: (&Digest, u64), layers: &[(Digest, u64)]) -> Vec<u8> {
    let layers: Vec<String> = layers
        .iter()
        .map(|(d, s)| {
            format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{d}","size":{s}}}"#)
        })
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{}]}}"#,
        config.0,
        config.1,
        layers.join(",")
    )
    .into_bytes()
}

#[test]
fn manifests_and_blobs_round_trip_by_tag_and_digest() {
    let reg = Registry::start();
    let repo = reg
        .client(Options::default())
        .repository(repo_name("strata/roundtrip"));
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = digest_bytes(config);
    let layer = Pattern::new(3 * MIB + 17, 1);
    assert_eq!(
        repo.push_blob(
            &config_digest,
            config.len() as u64,
            Cursor::new(&config[..]),
            PushOptions::default()
        )
        .unwrap(),
        Pushed::Uploaded
    );
    assert_eq!(layer.push(&repo).unwrap(), Pushed::Uploaded);
    assert_eq!(repo.stat_blob(&layer.digest()).unwrap(), Some(layer.size));

    let manifest = oci_manifest(
        (&config_digest, config.len() as u64),
        &[(layer.digest(), layer.size)],
    );
    let tag = Reference::parse("v1").unwrap();
    let pushed = repo
        .put_manifest(&tag, ManifestKind::OciManifest, &manifest)
        .unwrap();
    assert_eq!(pushed, digest_bytes(&manifest));

    for reference in [tag.clone(), Reference::Digest(pushed)] {
        let got = repo.get_manifest(&reference).unwrap();
        assert_eq!(got.bytes, manifest, "{reference}");
        assert_eq!(got.kind, ManifestKind::OciManifest);
        assert_eq!(got.digest, pushed);
    }

    // An index pointing at it, under another tag; the bytes come back as pushed.
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{pushed}","size":{},"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
        manifest.len()
    );
    let multi = Reference::parse("multi").unwrap();
    repo.put_manifest(&multi, ManifestKind::OciIndex, index.as_bytes())
        .unwrap();
    let got = repo.get_manifest(&multi).unwrap();
    assert_eq!(
        (got.kind, got.bytes.as_slice()),
        (ManifestKind::OciIndex, index.as_bytes())
    );

    // Blobs read back hash (here, independently) to their digests.
    let (d, n) = digest_of(repo.get_blob(&layer.digest(), Some(layer.size)).unwrap()).unwrap();
    assert_eq!((d, n), (layer.digest(), layer.size));
    let mut c = Vec::new();
    repo.get_blob(&config_digest, None)
        .unwrap()
        .read_to_end(&mut c)
        .unwrap();
    assert_eq!(c, config);
    // Read a little, then finish(): the rest is drained and checked.
    let mut reader = repo.get_blob(&layer.digest(), Some(layer.size)).unwrap();
    let mut head = [0u8; 4096];
    reader.read_exact(&mut head).unwrap();
    assert_eq!(reader.finish().unwrap(), layer.size);
}

#[test]
fn docker_schema2_manifest_keeps_its_media_type() {
    let reg = Registry::start();
    let repo = reg
        .client(Options::default())
        .repository(repo_name("strata/docker"));
    let config = br#"{"architecture":"arm64","os":"linux"}"#;
    let cd = digest_bytes(config);
    repo.push_blob(
        &cd,
        config.len() as u64,
        Cursor::new(&config[..]),
        PushOptions::default(),
    )
    .unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{cd}","size":{}}},"layers":[]}}"#,
        config.len()
    );
    let tag = Reference::parse("d").unwrap();
    repo.put_manifest(&tag, ManifestKind::DockerManifest, manifest.as_bytes())
        .unwrap();
    let got = repo.get_manifest(&tag).unwrap();
    assert_eq!(got.kind, ManifestKind::DockerManifest);
    assert_eq!(got.bytes, manifest.as_bytes());
}

/// A 80 MiB blob, once in one PUT and once in 16 MiB PATCH chunks: the requests are
/// the ones the policy asks for, and both read back bit-exact.
#[test]
fn big_blob_monolithic_and_chunked() {
    let reg = Registry::start();
    let blob = Pattern::new(80 * MIB + 5, 7);
    let digest = blob.digest();

    let wire = Wire::default();
    let mono = reg
        .client(Options {
            upload: UploadPolicy {
                monolithic_max: 1 << 30,
                chunk_size: 16 * MIB,
            },
            ..wire.options()
        })
        .repository(repo_name("strata/mono"));
    assert_eq!(blob.push(&mono).unwrap(), Pushed::Uploaded);
    assert_eq!(wire.count("PATCH", "/blobs/uploads/"), 0, "{}", wire.dump());
    let puts: Vec<_> = wire
        .all()
        .into_iter()
        .filter(|s| s.method == "PUT")
        .collect();
    assert_eq!(puts.len(), 1, "{}", wire.dump());
    assert_eq!((puts[0].status, puts[0].sent), (Some(201), blob.size));

    let wire = Wire::default();
    let chunked = reg
        .client(Options {
            upload: UploadPolicy {
                monolithic_max: 0,
                chunk_size: 16 * MIB,
            },
            ..wire.options()
        })
        .repository(repo_name("strata/chunked"));
    let mut seen = Vec::new();
    let pushed = chunked
        .push_blob(
            &digest,
            blob.size,
            blob.clone_at(0),
            PushOptions {
                mount_from: None,
                progress: Some(&mut |n| seen.push(n)),
                known_absent: false,
            },
        )
        .unwrap();
    assert_eq!(pushed, Pushed::Uploaded);
    let patches: Vec<_> = wire
        .all()
        .into_iter()
        .filter(|s| s.method == "PATCH")
        .collect();
    assert_eq!(patches.len(), 6, "{}", wire.dump());
    assert!(patches[..5]
        .iter()
        .all(|p| p.sent == 16 * MIB && p.status == Some(202)));
    assert_eq!(patches[5].sent, 5);
    let put = wire.all().into_iter().find(|s| s.method == "PUT").unwrap();
    assert_eq!((put.status, put.sent), (Some(201), 0));
    assert!(seen.windows(2).all(|w| w[0] <= w[1]) && seen.last() == Some(&blob.size));

    for repo in [&mono, &chunked] {
        let reader = repo.get_blob(&digest, Some(blob.size)).unwrap();
        assert_eq!(digest_of(reader).unwrap(), (digest, blob.size));
    }
    assert_eq!(
        std::fs::metadata(reg.blob_file(&digest)).unwrap().len(),
        blob.size
    );
}

/// Sizes around the edges of the upload modes: empty, one byte, and a chunk give or take
/// one, each in one PUT and in PATCH chunks of 1 MiB.
#[test]
fn edge_sizes_in_both_upload_modes() {
    let reg = Registry::start();
    for (name, monolithic_max) in [("strata/edge-mono", 1 << 30), ("strata/edge-chunked", 0)] {
        let repo = reg
            .client(Options {
                upload: UploadPolicy {
                    monolithic_max,
                    chunk_size: MIB,
                },
                ..Options::default()
            })
            .repository(repo_name(name));
        for (i, size) in [0, 1, MIB - 1, MIB, MIB + 1, 2 * MIB]
            .into_iter()
            .enumerate()
        {
            let blob = Pattern::new(size, 100 + i as u64);
            assert_eq!(blob.push(&repo).unwrap(), Pushed::Uploaded, "{name} {size}");
            assert_eq!(
                repo.stat_blob(&blob.digest()).unwrap(),
                Some(size),
                "{name} {size}"
            );
            let got = digest_of(repo.get_blob(&blob.digest(), Some(size)).unwrap()).unwrap();
            assert_eq!(got, (blob.digest(), size), "{name} {size}");
        }
    }
}

#[test]
fn second_push_sends_only_a_head() {
    let reg = Registry::start();
    let wire = Wire::default();
    let repo = reg
        .client(wire.options())
        .repository(repo_name("strata/again"));
    let blob = Pattern::new(2 * MIB, 3);
    assert_eq!(blob.push(&repo).unwrap(), Pushed::Uploaded);
    wire.take();
    let mut progress = 0;
    let again = blob
        .push_with(
            &repo,
            PushOptions {
                mount_from: None,
                progress: Some(&mut |n| progress = n),
                known_absent: false,
            },
        )
        .unwrap();
    assert_eq!(again, Pushed::AlreadyPresent);
    let seen = wire.all();
    assert_eq!(seen.len(), 1, "{}", wire.dump());
    assert_eq!(
        (seen[0].method.as_str(), seen[0].status),
        ("HEAD", Some(200))
    );
    assert_eq!(progress, blob.size);
}

/// A blob in repository a is mounted into b (201, nothing uploaded, the registry's
/// access log agrees); asking to mount from a repository without it falls back to
/// uploading in the session the 202 opened.
#[test]
fn cross_repository_mount_and_its_fallback() {
    let reg = Registry::start();
    let wire = Wire::default();
    let client = reg.client(wire.options());
    let a = client.repository(repo_name("strata/a"));
    let b = client.repository(repo_name("strata/b"));
    let blob = Pattern::new(5 * MIB, 11);
    assert_eq!(blob.push(&a).unwrap(), Pushed::Uploaded);
    wire.take();

    let from = repo_name("strata/a");
    let got = blob.push_mounting(&b, &from).unwrap();
    assert_eq!(got, Pushed::Mounted);
    let seen = wire.take();
    let bodies: u64 = seen.iter().map(|s| s.sent).sum();
    assert_eq!(bodies, 0, "{}", wire.dump());
    let mount: Vec<_> = seen.iter().filter(|s| s.method == "POST").collect();
    assert_eq!(mount.len(), 1);
    assert!(mount[0].url.contains("mount=sha256%3A") && mount[0].url.contains("from=strata%2Fa"));
    assert_eq!(mount[0].status, Some(201));
    let logged = reg.access_lines("/v2/strata/b/blobs/uploads/?mount=");
    assert!(
        logged.iter().any(|l| l.contains("\" 201 ")),
        "registry log:\n{}",
        reg.log()
    );
    assert_eq!(b.stat_blob(&blob.digest()).unwrap(), Some(blob.size));

    // Mounting from a repository that lacks the blob: 202, then the upload in that session.
    let other = Pattern::new(MIB, 12);
    let c = client.repository(repo_name("strata/c"));
    wire.take();
    let got = other.push_mounting(&c, &from).unwrap();
    assert_eq!(got, Pushed::Uploaded);
    let seen = wire.take();
    let posts: Vec<_> = seen.iter().filter(|s| s.method == "POST").collect();
    assert_eq!(posts.len(), 1, "{}", wire.dump());
    assert_eq!(posts[0].status, Some(202));
    let put = seen.iter().find(|s| s.method == "PUT").unwrap();
    assert_eq!((put.status, put.sent), (Some(201), other.size));
    assert_eq!(
        digest_of(c.get_blob(&other.digest(), None).unwrap())
            .unwrap()
            .0,
        other.digest()
    );
}

#[test]
fn missing_things_are_named_and_not_retried() {
    let reg = Registry::start();
    let wire = Wire::default();
    let repo = reg
        .client(wire.options())
        .repository(repo_name("strata/missing"));
    let blob = Pattern::new(1000, 5);
    blob.push(&repo).unwrap();
    wire.take();

    let e = repo
        .get_manifest(&Reference::parse("nope").unwrap())
        .unwrap_err();
    assert!(matches!(e, Error::ManifestUnknown { .. }), "{e}");
    assert!(!e.is_retryable());
    assert_eq!(e.to_string(), "manifest nope is unknown in strata/missing");

    let absent = digest_bytes(b"absent");
    let e = repo.get_blob(&absent, None).err().unwrap();
    assert!(matches!(e, Error::BlobUnknown { .. }), "{e}");
    assert_eq!(repo.stat_blob(&absent).unwrap(), None);
    assert_eq!(wire.take().len(), 3, "each answered once, no retries");

    // A manifest naming a blob the repository lacks.
    let m = oci_manifest((&blob.digest(), blob.size), &[(absent, 6)]);
    let e = repo
        .put_manifest(
            &Reference::parse("broken").unwrap(),
            ManifestKind::OciManifest,
            &m,
        )
        .unwrap_err();
    match &e {
        Error::ManifestRejected { errors, .. } => {
            assert!(errors.has("MANIFEST_BLOB_UNKNOWN"), "{e}")
        }
        _ => panic!("{e}"),
    }
    // Pushing under a digest it does not have is refused before anything is sent.
    let e = repo
        .put_manifest(&Reference::Digest(absent), ManifestKind::OciManifest, &m)
        .unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
}

#[test]
fn bad_local_sources_fail_before_the_upload_commits() {
    let reg = Registry::start();
    let repo = reg
        .client(Options::default())
        .repository(repo_name("strata/bad"));
    let blob = Pattern::new(4 * MIB, 9);
    let wrong = Pattern::new(4 * MIB, 10);
    for policy in [
        UploadPolicy {
            monolithic_max: 1 << 30,
            chunk_size: MIB,
        },
        UploadPolicy {
            monolithic_max: 0,
            chunk_size: MIB,
        },
    ] {
        let repo = reg
            .client(Options {
                upload: policy.clone(),
                ..Options::default()
            })
            .repository(repo_name("strata/bad"));
        let e = repo
            .push_blob(
                &blob.digest(),
                blob.size,
                wrong.clone_at(0),
                PushOptions::default(),
            )
            .unwrap_err();
        match &e {
            Error::DigestMismatch { actual, .. } => {
                assert_eq!(*actual, wrong.digest(), "{policy:?}")
            }
            Error::DigestInvalid { .. } => {}
            _ => panic!("{policy:?}: {e}"),
        }
        assert!(!e.is_retryable());
        // Short of its size: a local error, not a network one.
        let e = repo
            .push_blob(
                &blob.digest(),
                blob.size + 10,
                blob.clone_at(0),
                PushOptions::default(),
            )
            .unwrap_err();
        assert!(matches!(e, Error::Source { .. }), "{policy:?}: {e}");
    }
    assert_eq!(repo.stat_blob(&blob.digest()).unwrap(), None);
}

/// Distribution 2.8 pages its catalog (not its tags): the same `Link` code follows both.
#[test]
fn lists_come_page_by_page_and_a_delete_removes_the_manifest() {
    let reg = Registry::start();
    let client = reg.client(Options::default());
    let config = br#"{"rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = digest_bytes(config);
    let manifest = oci_manifest((&config_digest, config.len() as u64), &[]);
    let names: Vec<String> = (0..5).map(|i| format!("strata/r{i}")).collect();
    for name in &names {
        let repo = client.repository(repo_name(name));
        repo.push_blob(
            &config_digest,
            config.len() as u64,
            Cursor::new(&config[..]),
            PushOptions::default(),
        )
        .unwrap();
        for t in ["a", "b"] {
            repo.put_manifest(
                &Reference::parse(t).unwrap(),
                ManifestKind::OciManifest,
                &manifest,
            )
            .unwrap();
        }
    }
    let wire = Wire::default();
    let paged = reg.client(wire.options());
    assert_eq!(paged.catalog_paged(2).unwrap(), names);
    assert_eq!(wire.count("GET", "/_catalog"), 3, "{}", wire.dump());
    assert_eq!(client.catalog().unwrap(), names);
    let repo = client.repository(repo_name("strata/r0"));
    let mut tags = repo.tags().unwrap();
    tags.sort();
    assert_eq!(tags, ["a", "b"]);
    let digest = digest_bytes(&manifest);
    repo.delete_manifest(&digest).unwrap();
    assert!(matches!(
        repo.get_manifest(&Reference::parse("a").unwrap()),
        Err(Error::ManifestUnknown { .. })
    ));
    assert!(matches!(
        repo.delete_manifest(&digest),
        Err(Error::ManifestUnknown { .. })
    ));
}
