//! Faults between the client and a real registry: a proxy that drops (or stalls)
//! connections in the middle of blob downloads and uploads, and a registry whose
//! stored bytes were corrupted. Transfers must resume or retry and end with the right
//! digests; wrong bytes must fail clearly.

use crate::common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::proxy::{Action, Proxy, Silent};
use common::{digest_of, repo_name, Pattern, Registry, Wire};
use strata_registry::{
    Error, ManifestKind, Options, PushOptions, Pushed, Reference, Repository, RetryPolicy,
    UploadPolicy,
};

const MIB: u64 = 1 << 20;

fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 5,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(100),
    }
}

/// A client of `proxy` with `options` and quick retries.
fn quick_client(proxy: &Proxy, options: Options) -> strata_registry::Client {
    let retry = quick_retries();
    strata_registry::Client::new(proxy.host(), Options { retry, ..options }).unwrap()
}

/// Repository `name` through `proxy`, pushing in chunks of `chunk_size` bytes.
fn chunked(proxy: &Proxy, wire: &Wire, chunk_size: u64, name: &str) -> Repository {
    let upload = UploadPolicy {
        monolithic_max: 0,
        chunk_size,
    };
    through(proxy, wire, upload).repository(repo_name(name))
}

fn through(proxy: &Proxy, wire: &Wire, upload: UploadPolicy) -> strata_registry::Client {
    quick_client(
        proxy,
        Options {
            upload,
            ..wire.options()
        },
    )
}

fn seed(reg: &Registry, repo: &str, blob: &Pattern) {
    blob.push(&reg.client(Options::default()).repository(repo_name(repo)))
        .unwrap();
}

/// The registry's own copy, read directly (not through the proxy).
fn stored_digest(reg: &Registry, repo: &str, blob: &Pattern) -> strata_registry::Digest {
    let r = reg.client(Options::default()).repository(repo_name(repo));
    digest_of(r.get_blob(&blob.digest(), Some(blob.size)).unwrap())
        .unwrap()
        .0
}

#[test]
fn pull_resumes_with_range_after_dropped_connections() {
    let reg = Registry::start();
    let blob = Pattern::new(40 * MIB, 21);
    seed(&reg, "strata/pull", &blob);
    let proxy = Proxy::start(reg.port);
    proxy.rule("GET", "/blobs/sha256:", Action::DropResponse(5 * MIB), 1);
    proxy.rule("GET", "/blobs/sha256:", Action::DropResponse(12 * MIB), 1);
    let repo = through(&proxy, &Wire::default(), UploadPolicy::default())
        .repository(repo_name("strata/pull"));
    let mut last = 0;
    let reader = repo
        .get_blob(&blob.digest(), Some(blob.size))
        .unwrap()
        .with_progress(move |n| {
            assert!(n >= last, "progress went back");
            last = n;
        });
    assert_eq!(digest_of(reader).unwrap(), (blob.digest(), blob.size));
    let gets: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|s| s.method == "GET" && s.target.contains("/blobs/"))
        .collect();
    assert_eq!(gets.len(), 3, "{gets:?}");
    assert_eq!(gets[0].range, None);
    let starts: Vec<u64> = gets[1..]
        .iter()
        .map(|g| {
            g.range
                .as_deref()
                .unwrap()
                .trim_start_matches("bytes=")
                .trim_end_matches('-')
                .parse()
                .unwrap()
        })
        .collect();
    // Each resume starts where the bytes delivered so far end: after less than the cut.
    assert!(starts[0] > 0 && starts[0] <= 5 * MIB, "{starts:?}");
    assert!(
        starts[1] > starts[0] && starts[1] <= starts[0] + 12 * MIB,
        "{starts:?}"
    );
}

#[test]
fn stalled_download_times_out_and_resumes() {
    let reg = Registry::start();
    let blob = Pattern::new(8 * MIB, 22);
    seed(&reg, "strata/stall", &blob);
    let proxy = Proxy::start(reg.port);
    proxy.rule("GET", "/blobs/sha256:", Action::StallResponse(2 * MIB), 1);
    let client = quick_client(
        &proxy,
        Options {
            io_timeout: Duration::from_secs(1),
            ..Options::default()
        },
    );
    let t = Instant::now();
    let reader = client
        .repository(repo_name("strata/stall"))
        .get_blob(&blob.digest(), None)
        .unwrap();
    assert_eq!(digest_of(reader).unwrap().0, blob.digest());
    assert!(t.elapsed() >= Duration::from_secs(1));
    let ranged = proxy
        .seen()
        .into_iter()
        .filter(|s| s.range.is_some())
        .count();
    assert_eq!(ranged, 1);
}

/// Faults without progress use up the budget (5 attempts here); faults after progress
/// do not, so a download that advances on every connection gets through.
#[test]
fn download_retry_budget_counts_faults_without_progress() {
    let reg = Registry::start();
    let blob = Pattern::new(4 * MIB, 23);
    seed(&reg, "strata/flaky", &blob);
    let proxy = Proxy::start(reg.port);
    // Cut inside the response headers: no byte of the blob ever arrives.
    proxy.rule("GET", "/blobs/sha256:", Action::DropResponse(40), 5);
    let wire = Wire::default();
    let repo =
        through(&proxy, &wire, UploadPolicy::default()).repository(repo_name("strata/flaky"));
    let e = repo.get_blob(&blob.digest(), None).err().unwrap();
    assert!(
        matches!(e, Error::RetriesExhausted { attempts: 5, .. }),
        "{e}"
    );
    assert!(!e.is_retryable());
    assert_eq!(wire.count("GET", "/blobs/sha256:"), 5);

    // Six cuts, each after about 1 MiB: more faults than attempts, but each advanced.
    proxy.rule("GET", "/blobs/sha256:", Action::DropResponse(MIB), 6);
    let reader = repo.get_blob(&blob.digest(), None).unwrap();
    assert_eq!(digest_of(reader).unwrap(), (blob.digest(), blob.size));
    assert_eq!(proxy.hits(), 5 + 5, "{:?}", proxy.seen());
}

/// Chunks of 8 MiB; the connection drops 3 MiB into one PATCH. The registry has then
/// stored a partial chunk its upload state does not know about; the client asks the
/// upload's status and goes on from what it hears, and the blob ends up right.
#[test]
fn chunked_push_recovers_from_a_patch_cut_mid_body() {
    let reg = Registry::start();
    let blob = Pattern::new(40 * MIB, 31);
    let proxy = Proxy::start(reg.port);
    let wire = Wire::default();
    let repo = chunked(&proxy, &wire, 8 * MIB, "strata/cut");
    // Once the third chunk is on its way, arm the cut for the next PATCH.
    let mut armed = false;
    let mut progress = |n: u64| {
        if !armed && n > 16 * MIB {
            armed = true;
            proxy.rule(
                "PATCH",
                "/blobs/uploads/",
                Action::DropRequestBody(3 * MIB),
                1,
            );
        }
    };
    let pushed = blob.push_reporting(&repo, &mut progress);
    assert_eq!(pushed.unwrap(), Pushed::Uploaded, "{}", wire.dump());
    assert_eq!(proxy.hits(), 1, "{:?}", proxy.seen());
    assert_eq!(stored_digest(&reg, "strata/cut", &blob), blob.digest());
    // After the cut the client asked where the upload stood. Distribution 2.8 has
    // stored part of the cut chunk, which its upload state does not cover, so it
    // cancels the upload (404); the client starts over in a new session.
    let status: Vec<_> = wire
        .all()
        .into_iter()
        .filter(|s| s.method == "GET" && s.url.contains("/blobs/uploads/"))
        .collect();
    assert_eq!(status.len(), 1, "{}", wire.dump());
    assert_eq!(status[0].status, Some(404));
    assert_eq!(wire.count("POST", "/blobs/uploads/"), 2, "{}", wire.dump());
}

/// A connection that drops before any byte of a PATCH reaches the registry: the
/// upload status says how far the registry got, and the push resumes from there in
/// the same session instead of sending everything again.
#[test]
fn chunked_push_resumes_from_the_registry_offset() {
    let reg = Registry::start();
    let blob = Pattern::new(24 * MIB, 32);
    let proxy = Proxy::start(reg.port);
    let wire = Wire::default();
    let repo = chunked(&proxy, &wire, 4 * MIB, "strata/resume");
    // The fourth PATCH is cut right after its headers.
    let mut patches = 0;
    let mut progress = |n: u64| {
        let chunk = n.div_ceil(4 * MIB);
        if chunk == 3 && patches == 0 {
            patches = 1;
            proxy.rule("PATCH", "/blobs/uploads/", Action::DropRequestBody(0), 1);
        }
    };
    let pushed = blob.push_reporting(&repo, &mut progress).unwrap();
    assert_eq!(pushed, Pushed::Uploaded);
    assert_eq!(proxy.hits(), 1);
    assert_eq!(stored_digest(&reg, "strata/resume", &blob), blob.digest());
    let seen = wire.all();
    assert_eq!(
        wire.count("POST", "/blobs/uploads/"),
        1,
        "resumed, not restarted:\n{}",
        wire.dump()
    );
    let status = seen
        .iter()
        .find(|s| s.method == "GET" && s.url.contains("/blobs/uploads/"))
        .unwrap();
    assert_eq!(status.status, Some(204));
    // Everything was sent once, except the cut chunk's headers.
    let body_bytes: u64 = seen
        .iter()
        .filter(|s| s.method == "PATCH")
        .map(|s| s.sent)
        .sum();
    assert!(body_bytes <= blob.size + 4 * MIB, "{}", wire.dump());
    let patches_with_content_range: Vec<String> = proxy
        .seen()
        .iter()
        .filter_map(|s| s.content_range.clone())
        .collect();
    assert_eq!(
        patches_with_content_range.first().map(String::as_str),
        Some("0-4194303")
    );
}

/// The very first PATCH is cut before its body: the registry reports `0-0` (nothing
/// held) and the upload goes on from byte 0 in the same session.
#[test]
fn chunked_push_resumes_from_an_empty_session() {
    let reg = Registry::start();
    let blob = Pattern::new(3 * MIB, 36);
    let proxy = Proxy::start(reg.port);
    proxy.rule("PATCH", "/blobs/uploads/", Action::DropRequestBody(0), 1);
    let wire = Wire::default();
    let repo = chunked(&proxy, &wire, MIB, "strata/empty-session");
    assert_eq!(blob.push(&repo).unwrap(), Pushed::Uploaded);
    assert_eq!(wire.count("POST", "/blobs/uploads/"), 1, "{}", wire.dump());
    let ranges: Vec<String> = proxy
        .seen()
        .iter()
        .filter_map(|s| s.content_range.clone())
        .collect();
    assert_eq!(
        ranges,
        [
            "0-1048575",
            "0-1048575",
            "1048576-2097151",
            "2097152-3145727"
        ]
    );
    assert_eq!(
        stored_digest(&reg, "strata/empty-session", &blob),
        blob.digest()
    );
}

#[test]
fn monolithic_push_retries_after_a_dropped_put() {
    let reg = Registry::start();
    let blob = Pattern::new(12 * MIB, 33);
    let proxy = Proxy::start(reg.port);
    proxy.rule("PUT", "digest=", Action::DropRequestBody(5 * MIB), 1);
    let wire = Wire::default();
    let repo = through(&proxy, &wire, UploadPolicy::default()).repository(repo_name("strata/mono"));
    let pushed = blob.push(&repo).unwrap();
    assert_eq!(pushed, Pushed::Uploaded);
    assert_eq!(wire.count("PUT", "digest="), 2, "{}", wire.dump());
    assert_eq!(
        wire.count("POST", "/blobs/uploads/"),
        2,
        "a new session for the retry"
    );
    assert_eq!(stored_digest(&reg, "strata/mono", &blob), blob.digest());
}

/// The registry committed the blob but its answer was lost: a HEAD settles it, and
/// nothing is uploaded twice.
#[test]
fn lost_answer_to_the_final_put_is_settled_by_head() {
    let reg = Registry::start();
    let blob = Pattern::new(3 * MIB, 34);
    let proxy = Proxy::start(reg.port);
    proxy.rule("PUT", "digest=", Action::DropResponse(0), 1);
    let wire = Wire::default();
    let repo = through(&proxy, &wire, UploadPolicy::default()).repository(repo_name("strata/lost"));
    let pushed = blob.push(&repo).unwrap();
    assert_eq!(pushed, Pushed::Uploaded);
    assert_eq!(wire.count("PUT", "digest="), 1, "{}", wire.dump());
    let heads: Vec<_> = wire
        .all()
        .into_iter()
        .filter(|s| s.method == "HEAD")
        .collect();
    assert_eq!(
        heads.iter().map(|h| h.status).collect::<Vec<_>>(),
        [Some(404), Some(200)]
    );
}

/// Bytes corrupted on their way to the registry: it refuses the digest, the client
/// (whose own copy hashes right) reports the registry's DIGEST_INVALID and does not
/// retry.
#[test]
fn digest_refused_by_the_registry_is_reported() {
    let reg = Registry::start();
    let blob = Pattern::new(2 * MIB, 35);
    let proxy = Proxy::start(reg.port);
    proxy.rule("PUT", "digest=", Action::CorruptRequestBody(MIB), 1);
    let wire = Wire::default();
    let repo =
        through(&proxy, &wire, UploadPolicy::default()).repository(repo_name("strata/garbled"));
    let e = blob.push(&repo).unwrap_err();
    match &e {
        Error::DigestInvalid { digest, errors, .. } => {
            assert_eq!(*digest, blob.digest());
            assert!(errors.has("DIGEST_INVALID"), "{e}");
        }
        _ => panic!("{e}"),
    }
    assert!(
        e.to_string()
            .contains("DIGEST_INVALID: provided digest did not match uploaded content"),
        "{e}"
    );
    assert!(!e.is_retryable());
    assert_eq!(wire.count("PUT", "digest="), 1, "{}", wire.dump());
    assert_eq!(repo.stat_blob(&blob.digest()).unwrap(), None);
}

fn corrupt(path: &std::path::Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 0x55;
    f.write_all_at(&b, at).unwrap();
}

/// A registry that serves bytes other than the digest's (corrupted storage): the read
/// fails with InvalidData at the end, naming the blob and both digests.
#[test]
fn wrong_bytes_from_the_registry_fail_the_read() {
    let reg = Registry::start();
    let blob = Pattern::new(6 * MIB, 41);
    seed(&reg, "strata/rot", &blob);
    corrupt(&reg.blob_file(&blob.digest()), 3 * MIB);
    let repo = reg
        .client(Options::default())
        .repository(repo_name("strata/rot"));
    let mut reader = repo.get_blob(&blob.digest(), Some(blob.size)).unwrap();
    let mut delivered = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    let e = loop {
        match reader.read(&mut buf) {
            Ok(0) => panic!("a corrupted blob read to a clean end"),
            Ok(n) => delivered += n as u64,
            Err(e) => break e,
        }
    };
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    assert_eq!(
        delivered, blob.size,
        "the digest can only be known at the end"
    );
    let inner = Error::from_io(&e).unwrap();
    assert!(
        matches!(inner, Error::DigestMismatch { expected, .. } if *expected == blob.digest()),
        "{inner}"
    );
    assert!(inner.to_string().contains("strata/rot"), "{inner}");
    assert!(!inner.is_retryable());
    // Reading on does not pretend it is fine.
    assert!(reader.read(&mut buf).is_err());

    // A consumer that stops early and calls finish() still gets the verdict.
    let mut reader = repo.get_blob(&blob.digest(), Some(blob.size)).unwrap();
    reader.read_exact(&mut buf[..1000]).unwrap();
    let e = reader.finish().unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
}

#[test]
fn short_blob_from_the_registry_is_refused() {
    let reg = Registry::start();
    let blob = Pattern::new(2 * MIB, 42);
    seed(&reg, "strata/short", &blob);
    let file = reg.blob_file(&blob.digest());
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(MIB)
        .unwrap();
    let repo = reg
        .client(Options::default())
        .repository(repo_name("strata/short"));
    // Known size: refused before the bytes flow.
    let e = repo
        .get_blob(&blob.digest(), Some(blob.size))
        .err()
        .unwrap();
    assert!(
        matches!(e, Error::SizeMismatch { expected, actual, .. } if expected == 2 * MIB && actual == MIB),
        "{e}"
    );
    // Unknown size: the digest catches it.
    let e = digest_of(repo.get_blob(&blob.digest(), None).unwrap()).unwrap_err();
    assert!(
        matches!(Error::from_io(&e), Some(Error::DigestMismatch { .. })),
        "{e}"
    );
}

fn push_manifest(repo: &Repository, tag: &str) -> (strata_registry::Digest, Vec<u8>) {
    let config = br#"{"os":"linux","architecture":"amd64"}"#;
    let cd = common::digest_bytes(config);
    repo.push_blob(
        &cd,
        config.len() as u64,
        std::io::Cursor::new(&config[..]),
        PushOptions::default(),
    )
    .unwrap();
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[],"annotations":{{"k":"abcdef"}}}}"#,
        config.len()
    )
    .into_bytes();
    let d = repo
        .put_manifest(
            &Reference::parse(tag).unwrap(),
            ManifestKind::OciManifest,
            &m,
        )
        .unwrap();
    (d, m)
}

/// A manifest whose stored bytes changed (still valid JSON) fails by digest and by tag.
#[test]
fn corrupted_manifest_fails_its_digest_check() {
    let reg = Registry::start();
    let repo = reg
        .client(Options::default())
        .repository(repo_name("strata/m"));
    let (digest, bytes) = push_manifest(&repo, "v1");
    let at = bytes.windows(6).position(|w| w == b"abcdef").unwrap() as u64;
    corrupt(&reg.blob_file(&digest), at);
    for reference in [Reference::Digest(digest), Reference::parse("v1").unwrap()] {
        let e = repo.get_manifest(&reference).unwrap_err();
        assert!(
            matches!(e, Error::DigestMismatch { .. }),
            "{reference}: {e}"
        );
    }
}

/// A registry that sends its response headers one byte every 200 ms never makes a
/// single read wait long, but the headers as a whole are bounded by the timeout: the
/// request fails within it (retries included), instead of trickling on for minutes.
#[test]
fn trickled_response_headers_fail_within_the_timeout() {
    let reg = Registry::start();
    let repo = reg
        .client(Options::default())
        .repository(repo_name("strata/trickle"));
    push_manifest(&repo, "v1");
    let proxy = Proxy::start(reg.port);
    proxy.rule("GET", "/manifests/", Action::TrickleResponse(200), 100);
    let client = quick_client(
        &proxy,
        Options {
            timeout: Duration::from_secs(2),
            ..Options::default()
        },
    );
    let t = Instant::now();
    let e = client
        .repository(repo_name("strata/trickle"))
        .get_manifest(&Reference::parse("v1").unwrap())
        .unwrap_err();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(4),
        "took {took:?}: {e}"
    );
    let said = strata_testkit::error_chain(&e);
    assert!(said.contains("timeout"), "{said}");
}

/// A registry that accepts connections and never answers is an error after the
/// timeout, not after every attempt's worth of it (5 attempts of 2 s here).
#[test]
fn a_registry_that_never_answers_fails_within_the_timeout() {
    let silent = Silent::start();
    let client = strata_registry::Client::new(
        silent.host(),
        Options {
            timeout: Duration::from_secs(2),
            ..Options::default()
        },
    )
    .unwrap();
    let t = Instant::now();
    let e = client.ping().unwrap_err();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(4),
        "took {took:?}: {e}"
    );
    let said = strata_testkit::error_chain(&e);
    assert!(said.contains("timeout"), "{said}");
}
