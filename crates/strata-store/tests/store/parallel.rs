//! Layers imported while their parent comes ([`Store::import_after`]): written at once
//! (overlay) or after the parent (vfs), committed only after the parent, bit-exact, and
//! leaving nothing when the parent or the layer fails.

use std::io::Read;
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use strata_layer::compress::Compression;
use strata_layer::Entry;
use strata_store::{Applied, Error, ImportOptions, ParentWait, Store};
use strata_testkit::entries::{tar, EntryExt, Item};

use super::{chain, id, listing_of, TestStore};

fn parent_tar() -> Vec<u8> {
    tar(&[
        Item::dir("etc"),
        Item::file("etc/a", "a\n"),
        Item::file("etc/keep", "k\n"),
    ])
}

/// A layer that must see its parent: `etc/` again, a whiteout of `etc/a`, a new file.
fn whiteout_child() -> Vec<u8> {
    tar(&[
        Item::dir("etc"),
        Item::of(Entry::whiteout("etc/a")),
        Item::file("etc/b", "b\n"),
    ])
}

/// A layer that needs nothing of its parent: new directories only.
fn new_dirs_child() -> Vec<u8> {
    tar(&[
        Item::dir("opt"),
        Item::dir("opt/app"),
        Item::file("opt/app/run", "#!/bin/sh\n"),
    ])
}

/// What the test gives `import_after` as `parent_ready`: returns what the test sends,
/// and keeps where the layer said it waited.
struct Gate {
    receive: Mutex<mpsc::Receiver<Result<(), String>>>,
    waits: Mutex<Vec<ParentWait>>,
}

fn gate() -> (mpsc::Sender<Result<(), String>>, Gate) {
    let (send, receive) = mpsc::channel();
    let gate = Gate {
        receive: Mutex::new(receive),
        waits: Mutex::new(Vec::new()),
    };
    (send, gate)
}

impl Gate {
    fn wait(&self, at: ParentWait) -> Result<(), String> {
        self.waits.lock().unwrap().push(at);
        let receive = self.receive.lock().unwrap();
        receive
            .recv()
            .unwrap_or_else(|_| Err("the test ended".into()))
    }

    /// Where the layer waited, once per call.
    fn waits(&self) -> Vec<ParentWait> {
        self.waits.lock().unwrap().clone()
    }
}

/// A layer's bytes that say when they are first read, and when read to the end.
struct Watched<'a> {
    bytes: &'a [u8],
    first: Option<mpsc::Sender<()>>,
    end: Option<mpsc::Sender<()>>,
}

impl Read for Watched<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(s) = self.first.take() {
            let _ = s.send(());
        }
        let n = self.bytes.read(buf)?;
        if n == 0 {
            if let Some(s) = self.end.take() {
                let _ = s.send(());
            }
        }
        Ok(n)
    }
}

fn watched(bytes: &[u8]) -> (Watched<'_>, mpsc::Receiver<()>, mpsc::Receiver<()>) {
    let (first, read) = mpsc::channel();
    let (end, ended) = mpsc::channel();
    let w = Watched {
        bytes,
        first: Some(first),
        end: Some(end),
    };
    (w, read, ended)
}

fn import(store: &Store, name: &str, parent: Option<&str>, tar: &[u8]) -> Applied {
    store
        .import(
            &id(name),
            parent.map(id).as_ref(),
            tar,
            &ImportOptions::default(),
        )
        .unwrap_or_else(|e| panic!("import {name}: {}", chain(&e)))
}

fn diff_of(store: &Store, name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    store.diff(&id(name), &mut out, Compression::None).unwrap();
    out
}

/// The tree listing of a layer's content, but for the mtime of whiteouts (the time they
/// were made: a tar's whiteout has none).
fn files_of(dir: &std::path::Path) -> String {
    listing_of(dir)
        .lines()
        .map(|line| {
            let mut fields: Vec<&str> = line.split('\t').collect();
            if fields.get(1) == Some(&"c") && fields.get(10) == Some(&"0:0") {
                fields[6] = "-";
            }
            fields.join("\t") + "\n"
        })
        .collect()
}

/// Fails unless the store holds no layer `name`, nothing in staging, and fsck is clean.
#[track_caller]
fn nothing_left_of(t: &TestStore, name: &str) {
    assert!(!t.store.exists(&id(name)).unwrap(), "{name} was kept");
    assert!(
        !t.root.join("layers").join(name).exists(),
        "{name}'s directory"
    );
    assert!(
        !t.root.join("recipes").join(name).exists(),
        "{name}'s recipe"
    );
    let staged: Vec<_> = std::fs::read_dir(t.root.join("staging"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(staged.is_empty(), "left in staging: {staged:?}");
    let report = t.store.fsck(false).unwrap();
    assert!(report.clean(), "{report:?}");
}

/// On overlay a layer that needs nothing below is read to its end before its parent is
/// in, and still made visible only after it: the commit waits, the apply does not.
#[test]
fn overlay_applies_a_layer_before_its_parent_and_commits_it_after() {
    let t = TestStore::new("overlay");
    let (parent, child) = (parent_tar(), new_dirs_child());
    let (go, gate) = gate();
    let (input, _read, ended) = watched(&child);
    let opts = ImportOptions::default();
    let (store, gate, opts) = (&t.store, &gate, &opts);
    std::thread::scope(|s| {
        let c = s.spawn(move || {
            store.import_after(&id("c"), &id("p"), input, opts, &|at| gate.wait(at))
        });
        ended
            .recv_timeout(Duration::from_secs(30))
            .expect("the layer was not read to its end while its parent was still coming");
        std::thread::sleep(Duration::from_millis(100));
        assert!(!c.is_finished(), "finished before its parent was in");
        assert!(
            !t.store.exists(&id("c")).unwrap(),
            "visible before its parent"
        );
        import(&t.store, "p", None, &parent);
        go.send(Ok(())).unwrap();
        let applied = c
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("{}", chain(&e)));
        assert_eq!(applied.layer.parent, Some(id("p")));
        assert_eq!(applied.layer.depth, 2);
    });
    // Complete before it waited: a caller may count it as done meanwhile.
    assert_eq!(gate.waits(), [ParentWait::Commit]);
    assert_eq!(diff_of(&t.store, "c"), child, "rebuilt bit for bit");
    let view = t.store.inspect(&id("c")).unwrap().content;
    assert_eq!(
        std::fs::read(view.join("opt/app/run")).unwrap(),
        b"#!/bin/sh\n"
    );
    assert!(t.store.fsck(false).unwrap().clean());
}

/// A layer that must see its parent (a whiteout of the parent's file) ends the same, byte
/// for byte and file for file, as when imported after it, on both drivers.
#[test]
fn a_layer_imported_while_its_parent_comes_ends_as_after_it() {
    for driver in ["overlay", "vfs"] {
        let (parent, child) = (parent_tar(), whiteout_child());
        let one_by_one = TestStore::new(driver);
        import(&one_by_one.store, "p", None, &parent);
        let want = import(&one_by_one.store, "c", Some("p"), &child);

        let t = TestStore::new(driver);
        let (go, gate) = gate();
        let opts = ImportOptions::default();
        let got = std::thread::scope(|s| {
            let c = s.spawn(|| {
                t.store
                    .import_after(&id("c"), &id("p"), &child[..], &opts, &|at| gate.wait(at))
            });
            std::thread::sleep(Duration::from_millis(50));
            assert!(
                !t.store.exists(&id("c")).unwrap(),
                "{driver}: visible early"
            );
            import(&t.store, "p", None, &parent);
            go.send(Ok(())).unwrap();
            c.join().unwrap()
        })
        .unwrap_or_else(|e| panic!("{driver}: {}", chain(&e)));
        // Overlay: at the whiteout, which must see below; vfs: first, for the copy.
        assert_eq!(gate.waits(), [ParentWait::Content], "{driver}");
        assert_eq!(got.diff.diff_id, want.diff.diff_id, "{driver}");
        assert_eq!(got.layer.depth, 2, "{driver}");
        assert_eq!(
            diff_of(&t.store, "c"),
            child,
            "{driver}: rebuilt bit for bit"
        );
        assert_eq!(
            files_of(&t.content("c")),
            files_of(&one_by_one.content("c")),
            "{driver}: the layer's files"
        );
        assert_eq!(
            std::fs::read(t.root.join("recipes/c")).unwrap(),
            std::fs::read(one_by_one.root.join("recipes/c")).unwrap(),
            "{driver}: the recipe"
        );
        assert!(t.store.fsck(false).unwrap().clean(), "{driver}");
    }
}

/// vfs starts a layer from a copy of its parent: nothing is read before the parent is in.
#[test]
fn vfs_reads_a_layer_only_once_its_parent_is_in() {
    let t = TestStore::new("vfs");
    let (parent, child) = (parent_tar(), new_dirs_child());
    let (go, gate) = gate();
    let (input, read, _ended) = watched(&child);
    let opts = ImportOptions::default();
    let (store, gate, opts) = (&t.store, &gate, &opts);
    std::thread::scope(|s| {
        let c = s.spawn(move || {
            store.import_after(&id("c"), &id("p"), input, opts, &|at| gate.wait(at))
        });
        assert!(
            read.recv_timeout(Duration::from_millis(300)).is_err(),
            "read before its parent was in"
        );
        import(&t.store, "p", None, &parent);
        go.send(Ok(())).unwrap();
        c.join()
            .unwrap()
            .unwrap_or_else(|e| panic!("{}", chain(&e)));
    });
    let dir = t.content("c");
    assert_eq!(
        std::fs::read(dir.join("etc/keep")).unwrap(),
        b"k\n",
        "the copy"
    );
    assert!(dir.join("opt/app/run").exists());
    assert_eq!(diff_of(&t.store, "c"), child);
    assert_eq!(gate.waits(), [ParentWait::Content]);
}

/// A parent that fails takes the layer with it: `ParentFailed`, and nothing of the layer
/// anywhere, whether its writer was waiting to see below or not. So does a parent said to
/// be ready that is not there, and a layer of the wrong diffID.
#[test]
fn a_failed_parent_or_layer_leaves_nothing() {
    for driver in ["overlay", "vfs"] {
        let t = TestStore::new(driver);
        for child in [whiteout_child(), new_dirs_child()] {
            let (go, gate) = gate();
            go.send(Err("its download broke".into())).unwrap();
            let err = t
                .store
                .import_after(
                    &id("c"),
                    &id("p"),
                    &child[..],
                    &ImportOptions::default(),
                    &|at| gate.wait(at),
                )
                .unwrap_err();
            assert!(
                matches!(err, Error::ParentFailed { .. }),
                "{driver}: {err:?}"
            );
            assert_eq!(
                err.to_string(),
                "layer `c` was not brought in: its parent `p` failed: its download broke"
            );
            nothing_left_of(&t, "c");
        }

        let ready = |_: ParentWait| Ok(());
        let opts = ImportOptions::default();
        let err = t
            .store
            .import_after(&id("c"), &id("p"), &whiteout_child()[..], &opts, &ready)
            .unwrap_err();
        assert!(
            chain(&err).contains("its parent `p` does not exist"),
            "{driver}: {}",
            chain(&err)
        );
        nothing_left_of(&t, "c");

        // On overlay a layer that fails by itself does not wait for its parent at all.
        let wrong = ImportOptions {
            diff_id: Some(strata_layer::digest::sha256(b"another layer")),
            ..ImportOptions::default()
        };
        let asked = std::sync::atomic::AtomicBool::new(false);
        let never = |_: ParentWait| {
            asked.store(true, std::sync::atomic::Ordering::SeqCst);
            Err("asked for a parent that never comes".to_string())
        };
        let err = t
            .store
            .import_after(&id("c"), &id("p"), &new_dirs_child()[..], &wrong, &never)
            .unwrap_err();
        let asked = asked.load(std::sync::atomic::Ordering::SeqCst);
        match driver {
            "overlay" => {
                assert!(matches!(err, Error::Mismatch { .. }), "{err:?}");
                assert!(!asked, "waited for the parent");
            }
            // A copy of the parent comes first.
            _ => assert!(
                matches!(err, Error::ParentFailed { .. }) && asked,
                "{err:?}"
            ),
        }
        nothing_left_of(&t, "c");

        import(&t.store, "p", None, &parent_tar());
        let wrong = ImportOptions {
            diff_id: Some(strata_layer::digest::sha256(b"another layer")),
            ..ImportOptions::default()
        };
        let err = t
            .store
            .import_after(&id("c"), &id("p"), &whiteout_child()[..], &wrong, &ready)
            .unwrap_err();
        assert!(matches!(err, Error::Mismatch { .. }), "{driver}: {err:?}");
        nothing_left_of(&t, "c");
        assert!(t.store.exists(&id("p")).unwrap());
    }
}
