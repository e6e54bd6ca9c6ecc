//! The store under kills and under load.
//!
//! * `kill_9_at_random_moments_*`: 50 runs per driver that `kill -9` a `strata` process at
//!   a random moment of an apply, a removal, a mount or an unmount. After each kill the
//!   next command recovers, `fsck` is clean, the layer concerned is either as before or
//!   completely done (never half-visible), and every layer committed earlier is intact.
//! * `eight_processes_share_one_store`: 8 processes do random create, apply, mount,
//!   umount, diff, changes and rm on one store for `STRATA_STRESS_SECONDS` (default 60);
//!   every failure must be one of the refusals the store documents, every diff must hash
//!   to its layer's diffID, and `fsck` is clean at the end.
//!
//! The random choices come from a seed printed at the start (`STRATA_TEST_SEED` replays).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A small, seedable generator (xorshift64*), enough to pick moments and operations.
struct Rng(u64);

impl Rng {
    fn seeded(salt: u64) -> (Rng, u64) {
        let seed = std::env::var("STRATA_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        (
            Rng((seed ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1),
            seed,
        )
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

struct Store {
    root: PathBuf,
    driver: &'static str,
}

impl Store {
    fn status(&self, id: &str) -> Option<String> {
        let r = self.run(&["--json", "layer", "inspect", id]);
        if r.success() {
            Some(jstr(&r.json(), "status").to_owned())
        } else {
            assert!(r.stderr.contains("no layer"), "inspect {id}: {}", r.stderr);
            None
        }
    }
    fn fsck_clean(&self, when: &str) {
        let r = self.run(&["--json", "fsck"]);
        assert!(
            r.success() && r.json()["clean"] == Value::Bool(true),
            "fsck after {when}:\n{}\n{}",
            r.stdout_text(),
            r.stderr
        );
    }
    fn diff_digest(&self, id: &str) -> String {
        let mut cmd = self.cmd(&["layer", "diff", id]);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let (digest, _) = sha256_reader(child.stdout.take().unwrap());
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "layer diff {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        digest
    }
    fn mount_count(&self, id: &str) -> u64 {
        ju64(&self.json(&["layer", "inspect", id]), "mounts")
    }
}

impl StoreCli for Store {
    fn root(&self) -> &Path {
        &self.root
    }

    fn driver(&self) -> Option<&str> {
        Some(self.driver)
    }
}

/// Starts `strata ARGS`, kills it with SIGKILL after `delay` (if still running), and
/// says whether it had finished by itself (and how).
fn kill_after(store: &Store, args: &[&str], delay: Duration) -> Option<bool> {
    let mut child = store
        .cmd(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st.success());
        }
        if start.elapsed() >= delay {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn kill_9_at_random_moments(driver: &'static str, salt: u64) {
    let (mut rng, seed) = Rng::seeded(salt);
    eprintln!("{driver}: seed {seed} (STRATA_TEST_SEED={seed} replays)");
    let dir = tempdir();
    let store = Store {
        root: dir.path().join("store"),
        driver,
    };
    let layers = oci_layers("corpus");
    let (base, big) = (&layers[0].path, &layers[2].path);
    let big_diff_id = layers_tsv()[2].diff_id.clone();
    store.ok(&["layer", "create", "base"]);
    store.ok(&["layer", "apply", "base", "-i", base.to_str().unwrap()]);
    let base_digest = store.diff_digest("base");
    store.ok(&["layer", "create", "--rw", "--parent", "base", "ctr"]);
    let mut committed: Vec<String> = Vec::new(); // applied layers on base
    let mut mounts: u64 = 0;
    let (mut killed, mut finished) = (0, 0);
    for run in 0..50 {
        let op = rng.below(4);
        match op {
            0 => {
                // Apply, killed at a random moment of its ~0.1-0.5 s.
                let id = format!("a{run}");
                store.ok(&["layer", "create", "--parent", "base", &id]);
                let delay = Duration::from_millis(rng.below(500));
                let done = kill_after(
                    &store,
                    &["layer", "apply", &id, "-i", big.to_str().unwrap()],
                    delay,
                );
                match store.status(&id).as_deref() {
                    Some("applied") => {
                        assert_eq!(
                            store.diff_digest(&id),
                            big_diff_id,
                            "run {run}: applied layer {id}"
                        );
                        committed.push(id);
                    }
                    Some("empty") => {
                        assert_ne!(
                            done,
                            Some(true),
                            "run {run}: a finished apply left {id} empty"
                        );
                        let content =
                            PathBuf::from(jstr(&store.json(&["layer", "inspect", &id]), "content"));
                        assert!(
                            names(&content).is_empty(),
                            "run {run}: {id} is empty but holds files"
                        );
                        store.ok(&["layer", "rm", &id]);
                    }
                    other => panic!("run {run}: layer {id} is {other:?} after a killed apply"),
                }
                if done.is_none() {
                    killed += 1
                } else {
                    finished += 1
                }
            }
            1 if !committed.is_empty() => {
                // Removal of the newest applied layer.
                let id = committed.pop().unwrap();
                let delay = Duration::from_millis(rng.below(150));
                let done = kill_after(&store, &["layer", "rm", &id], delay);
                match store.status(&id).as_deref() {
                    None => {}
                    Some("applied") => {
                        assert_ne!(done, Some(true), "run {run}: a finished rm left {id}");
                        assert_eq!(
                            store.diff_digest(&id),
                            big_diff_id,
                            "run {run}: {id} after a killed rm"
                        );
                        committed.push(id);
                    }
                    other => panic!("run {run}: layer {id} is {other:?} after a killed rm"),
                }
                if done.is_none() {
                    killed += 1
                } else {
                    finished += 1
                }
            }
            _ => {
                // Mount or umount of the container layer, killed within its few ms.
                let umount = mounts > 0 && rng.below(2) == 0;
                let verb = if umount { "umount" } else { "mount" };
                let delay = Duration::from_micros(rng.below(30_000));
                let done = kill_after(&store, &["layer", verb, "ctr"], delay);
                let now = store.mount_count("ctr");
                let (before, after) = if umount {
                    (mounts, mounts - 1)
                } else {
                    (mounts, mounts + 1)
                };
                assert!(
                    now == before || now == after,
                    "run {run}: {verb} took the count from {before} to {now}"
                );
                if done == Some(true) {
                    assert_eq!(now, after, "run {run}: a finished {verb}");
                }
                mounts = now;
                if done.is_none() {
                    killed += 1
                } else {
                    finished += 1
                }
            }
        }
        store.fsck_clean(&format!("run {run} (op {op})"));
        assert_eq!(
            store.diff_digest("base"),
            base_digest,
            "run {run}: the base layer changed"
        );
        for id in &committed {
            assert_eq!(
                store.status(id).as_deref(),
                Some("applied"),
                "run {run}: {id} was lost"
            );
        }
    }
    eprintln!("{driver}: {killed} runs killed, {finished} finished before the kill");
    assert!(
        killed >= 10,
        "too few kills landed ({killed}); the test is not testing"
    );
    for _ in 0..mounts {
        store.ok(&["layer", "umount", "ctr"]);
    }
    store.fsck_clean("the last run");
}

#[test]
fn kill_9_at_random_moments_on_overlay() {
    kill_9_at_random_moments("overlay", 1);
}

#[test]
fn kill_9_at_random_moments_on_vfs() {
    kill_9_at_random_moments("vfs", 2);
}

/// Refusals a store gives when processes race for the same layers.
const EXPECTED_REFUSALS: &[&str] = &[
    "no layer",
    "already exists",
    "has child layers",
    "is mounted",
    "is in use by another strata process",
    "has no content yet",
    "already holds its diff",
    "is being applied by another process",
    "is not mounted",
    "is a read-write layer",
    "has not been applied yet",
    "does not exist",
];

#[test]
fn eight_processes_share_one_store() {
    let seconds: u64 = std::env::var("STRATA_STRESS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let dir = tempdir();
    let store = Arc::new(Store {
        root: dir.path().join("store"),
        driver: "overlay",
    });
    let base = oci_layers("base")[0].path.clone();
    store.ok(&["layer", "create", "base"]);
    store.ok(&["layer", "apply", "base", "-i", base.to_str().unwrap()]);
    let diffs: Vec<PathBuf> = [
        "hardlinks.tar",
        "whiteout-files.tar",
        "symlinks.tar",
        "xattrs-pax.tar",
    ]
    .iter()
    .map(|n| edge(n))
    .collect();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(Mutex::new([0u64; 2]));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (store, failures, stop, ops, diffs) = (
                store.clone(),
                failures.clone(),
                stop.clone(),
                ops.clone(),
                diffs.clone(),
            );
            std::thread::spawn(move || {
                let (mut rng, seed) = Rng::seeded(100 + w);
                if w == 0 {
                    eprintln!("seed {seed}");
                }
                // Shared names, so the processes collide on purpose.
                let id = |rng: &mut Rng| format!("s{}", rng.below(6));
                while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                    let x = id(&mut rng);
                    let parent = if rng.below(3) == 0 {
                        id(&mut rng)
                    } else {
                        "base".to_string()
                    };
                    let diff = diffs[rng.below(diffs.len() as u64) as usize]
                        .to_str()
                        .unwrap()
                        .to_owned();
                    let args: Vec<String> = match rng.below(9) {
                        0 => vec![
                            "layer".into(),
                            "create".into(),
                            "--parent".into(),
                            parent,
                            x,
                        ],
                        1 => vec![
                            "layer".into(),
                            "create".into(),
                            "--rw".into(),
                            "--parent".into(),
                            parent,
                            x,
                        ],
                        2 | 3 => vec!["layer".into(), "apply".into(), x, "-i".into(), diff],
                        4 => vec!["layer".into(), "mount".into(), x],
                        5 => vec!["layer".into(), "umount".into(), x],
                        6 => vec!["layer".into(), "rm".into(), x],
                        7 => vec!["layer".into(), "changes".into(), x],
                        _ => vec!["diff".into(), x],
                    };
                    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
                    let outcome = if argv[0] == "diff" {
                        check_diff(&store, argv[1])
                    } else {
                        let r = store.run(&argv);
                        if r.success() {
                            Ok(true)
                        } else if r.status.code().is_some()
                            && EXPECTED_REFUSALS.iter().any(|m| r.stderr.contains(m))
                        {
                            Ok(false)
                        } else {
                            Err(format!(
                                "`{}`: {} {}",
                                argv.join(" "),
                                r.status,
                                r.stderr.trim()
                            ))
                        }
                    };
                    match outcome {
                        Ok(success) => ops.lock().unwrap()[usize::from(!success)] += 1,
                        Err(e) => {
                            failures.lock().unwrap().push(e);
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a worker panicked");
    }
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "unexpected failures:\n{}",
        failures.join("\n")
    );
    let [done, refused] = *ops.lock().unwrap();
    eprintln!("{done} operations succeeded, {refused} were refused as expected");
    assert!(done > 100, "too little work got done ({done})");
    // Release every mount, then everything must check out.
    for l in store.json(&["layer", "ls"]).as_array().unwrap() {
        for _ in 0..ju64(l, "mounts") {
            store.ok(&["layer", "umount", jstr(l, "id")]);
        }
    }
    store.fsck_clean("the stress run");
}

/// `layer diff ID` of a layer writes a tar that hashes to the diffID it reports (for an
/// applied layer, the rebuild also checked it against the recorded one); a layer that is
/// not there, or not ready, is an expected refusal.
fn check_diff(store: &Store, id: &str) -> Result<bool, String> {
    let tmp = tempdir();
    let out = tmp.path().join("diff.tar");
    let r = store.run(&["--json", "layer", "diff", id, "-o", out.to_str().unwrap()]);
    if !r.success() {
        return if r.status.code().is_some()
            && EXPECTED_REFUSALS.iter().any(|m| r.stderr.contains(m))
        {
            Ok(false)
        } else {
            Err(format!("diff {id}: {} {}", r.status, r.stderr.trim()))
        };
    }
    let reported = jstr(&r.json(), "diff_id").to_owned();
    let (got, _) = sha256_reader(std::fs::File::open(&out).map_err(|e| e.to_string())?);
    if got != reported {
        return Err(format!("diff {id}: wrote {got}, reported {reported}"));
    }
    Ok(true)
}
