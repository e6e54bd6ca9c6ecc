//! Interop with skopeo through the real registry, on the corpus image: skopeo pulls
//! what this client pushed with identical digests, and this client pulls what skopeo
//! pushed with identical digests. A second image sharing the base layer is pushed
//! into another repository by mounting it.

use crate::common;

use std::fs::File;
use std::process::Command;

use common::oci::{corpus, image, only_image, Image};
use common::{digest_of, repo_name, tempdir, Registry, Wire};
use strata_registry::{Options, PushOptions, Pushed, Reference, Repository, RepositoryName};

fn skopeo(args: &[&str]) {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("run skopeo (apt-get install skopeo; scripts/test.sh does it)");
    assert!(
        out.status.success(),
        "skopeo {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn push_image(
    repo: &Repository,
    img: &Image,
    tag: &str,
    mount_from: Option<&RepositoryName>,
) -> Vec<Pushed> {
    let mut outcomes = Vec::new();
    for b in &img.blobs {
        let f = File::open(&b.path).unwrap();
        outcomes.push(
            repo.push_blob(
                &b.digest,
                b.size,
                f,
                PushOptions {
                    mount_from,
                    progress: None,
                    known_absent: false,
                },
            )
            .unwrap(),
        );
    }
    let d = repo
        .put_manifest(&Reference::parse(tag).unwrap(), img.kind, &img.manifest)
        .unwrap();
    assert_eq!(d, img.digest);
    outcomes
}

/// Every blob of `got` hashes to its digest, and the image equals `want`.
fn assert_same_image(got: &Image, want: &Image) {
    assert_eq!(got.digest, want.digest);
    assert_eq!(got.manifest, want.manifest);
    for (g, w) in got.blobs.iter().zip(&want.blobs) {
        assert_eq!((g.digest, g.size), (w.digest, w.size));
        assert_eq!(
            digest_of(File::open(&g.path).unwrap()).unwrap(),
            (w.digest, w.size),
            "{}",
            g.path.display()
        );
    }
    assert_eq!(got.blobs.len(), want.blobs.len());
}

#[test]
fn skopeo_pulls_what_we_push() {
    let layout = corpus().join("oci");
    let reg = Registry::start();
    let wire = Wire::default();
    let client = reg.client(wire.options());
    let corpus_img = image(&layout, "corpus");
    let base_img = image(&layout, "base");
    let repo = client.repository(repo_name("strata/corpus"));
    let pushed = push_image(&repo, &corpus_img, "corpus", None);
    assert!(pushed.iter().all(|p| *p == Pushed::Uploaded), "{pushed:?}");

    // The base image shares layer 1 with corpus: in another repository it is mounted.
    let base_repo = client.repository(repo_name("strata/base"));
    let from = repo_name("strata/corpus");
    let pushed = push_image(&base_repo, &base_img, "base", Some(&from));
    assert!(
        base_img.blobs.iter().zip(&pushed).all(|(b, p)| {
            let shared = corpus_img.blobs.iter().any(|c| c.digest == b.digest);
            *p == if shared {
                Pushed::Mounted
            } else {
                Pushed::Uploaded
            }
        }),
        "{pushed:?}"
    );
    assert!(pushed.contains(&Pushed::Mounted));
    // Pushing again uploads nothing.
    wire.take();
    assert!(push_image(&repo, &corpus_img, "corpus", None)
        .iter()
        .all(|p| *p == Pushed::AlreadyPresent));
    assert!(
        wire.all()
            .iter()
            .all(|s| s.sent == 0 || s.url.contains("/manifests/")),
        "{}",
        wire.dump()
    );

    for (name, tag, want) in [
        ("strata/corpus", "corpus", &corpus_img),
        ("strata/base", "base", &base_img),
    ] {
        let dest = tempdir();
        let dir = dest.path().join("oci");
        skopeo(&[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://127.0.0.1:{}/{name}:{tag}", reg.port),
            &format!("oci:{}:{tag}", dir.display()),
        ]);
        assert_same_image(&only_image(&dir), want);
    }
}

#[test]
fn we_pull_what_skopeo_pushes() {
    let layout = corpus().join("oci");
    let reg = Registry::start();
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:corpus", layout.display()),
        &format!("docker://127.0.0.1:{}/strata/from-skopeo:1", reg.port),
    ]);
    let want = image(&layout, "corpus");
    let repo = reg
        .client(Options::default())
        .repository(repo_name("strata/from-skopeo"));
    let by_tag = repo.get_manifest(&Reference::parse("1").unwrap()).unwrap();
    assert_eq!((by_tag.digest, by_tag.kind), (want.digest, want.kind));
    assert_eq!(by_tag.bytes, want.manifest);
    let by_digest = repo.get_manifest(&Reference::Digest(want.digest)).unwrap();
    assert_eq!(by_digest, by_tag);
    // Every blob, into a fresh directory, hashed there independently.
    let out = tempdir();
    for b in &want.blobs {
        assert_eq!(repo.stat_blob(&b.digest).unwrap(), Some(b.size));
        let path = out.path().join(b.digest.hex());
        let mut reader = repo.get_blob(&b.digest, Some(b.size)).unwrap();
        let mut f = File::create(&path).unwrap();
        std::io::copy(&mut reader, &mut f).unwrap();
        assert_eq!(
            digest_of(File::open(&path).unwrap()).unwrap(),
            (b.digest, b.size)
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            std::fs::read(&b.path).unwrap()
        );
    }
}
