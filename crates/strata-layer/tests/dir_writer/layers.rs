//! Whiteouts and opaque markers hide lower layers only.

use super::*;

#[test]
fn whiteouts_hide_lower_paths_and_keep_this_layers_paths() {
    let s = Scratch::new();
    let r = &s.root;
    std::fs::create_dir_all(r.join("usr/share/man/man1")).unwrap();
    std::fs::write(r.join("usr/share/man/man1/ls.1"), b"ls").unwrap();
    std::fs::create_dir(r.join("etc")).unwrap();
    std::fs::write(r.join("etc/motd"), b"lower").unwrap();
    std::fs::write(r.join("x"), b"lower x").unwrap();
    std::fs::write(r.join("y"), b"lower y").unwrap();
    std::fs::create_dir_all(r.join("d/sub")).unwrap();
    std::fs::write(r.join("d/old"), b"old").unwrap();
    std::fs::write(r.join("d/sub/old"), b"old").unwrap();
    let summary = apply(
        r,
        &[
            whiteout("etc/motd"),
            whiteout("usr/share/man"),
            whiteout("nothing/here"),
            whiteout("x"),
            file("x", b"new x"),
            file("y", b"new y"),
            whiteout("y"),
            // d: lower d/old and d/sub/old go; this layer's d/sub/new stays.
            file("d/sub/new", b"new"),
            whiteout("d"),
        ],
    )
    .unwrap();
    assert!(!r.join("etc/motd").exists());
    assert!(r.join("etc").is_dir());
    assert!(!r.join("usr/share/man").exists());
    assert!(r.join("usr/share").is_dir());
    assert_eq!(std::fs::read(r.join("x")).unwrap(), b"new x");
    assert_eq!(std::fs::read(r.join("y")).unwrap(), b"new y");
    assert!(
        summary
            .warnings
            .iter()
            .any(|w| w.contains("whiteout of `y`")),
        "{:?}",
        summary.warnings
    );
    assert!(!r.join("d/old").exists());
    assert!(!r.join("d/sub/old").exists());
    assert_eq!(std::fs::read(r.join("d/sub/new")).unwrap(), b"new");
}

#[test]
fn whiteout_of_a_dir_then_recreating_it_holds_only_the_new_content() {
    let s = Scratch::new();
    std::fs::create_dir(s.root.join("d")).unwrap();
    std::fs::write(s.root.join("d/lower"), b"l").unwrap();
    apply(&s.root, &[whiteout("d"), dir("d"), file("d/fresh", b"f")]).unwrap();
    let names: Vec<_> = std::fs::read_dir(s.root.join("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("fresh")]);
}

fn lower_tree(r: &Path) {
    std::fs::create_dir_all(r.join("etc/apt/apt.conf.d")).unwrap();
    std::fs::write(r.join("etc/apt/sources.list"), b"lower").unwrap();
    std::fs::write(r.join("etc/apt/trusted.gpg"), b"lower").unwrap();
    std::fs::write(r.join("etc/apt/apt.conf.d/70debconf"), b"lower").unwrap();
    std::fs::create_dir_all(r.join("etc/apt/sources.list.d")).unwrap();
    std::fs::write(r.join("etc/apt/sources.list.d/old.list"), b"lower").unwrap();
    std::fs::write(r.join("etc/hostname"), b"lower").unwrap();
}

fn listing(r: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![r.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let rel = e
                .path()
                .strip_prefix(r)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            let md = lmeta(&e.path());
            if md.is_dir() {
                todo.push(e.path());
                out.push((rel + "/", Vec::new()));
            } else {
                out.push((rel, std::fs::read(e.path()).unwrap_or_default()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn opaque_marker_gives_the_same_result_wherever_it_appears() {
    let orders: [Vec<Item>; 3] = [
        vec![
            dir("etc/apt"),
            opaque("etc/apt"),
            file("etc/apt/sources.list", b"new"),
            file("etc/apt/sources.list.d/debian.list", b"deb"),
        ],
        vec![
            opaque("etc/apt"),
            dir("etc/apt"),
            file("etc/apt/sources.list", b"new"),
            file("etc/apt/sources.list.d/debian.list", b"deb"),
        ],
        vec![
            dir("etc/apt"),
            file("etc/apt/sources.list", b"new"),
            file("etc/apt/sources.list.d/debian.list", b"deb"),
            opaque("etc/apt"),
        ],
    ];
    let mut results = Vec::new();
    for items in &orders {
        let s = Scratch::new();
        lower_tree(&s.root);
        apply(&s.root, items).unwrap();
        results.push(listing(&s.root));
    }
    let want: Vec<(String, Vec<u8>)> = vec![
        ("etc/".into(), vec![]),
        ("etc/apt/".into(), vec![]),
        ("etc/apt/sources.list".into(), b"new".to_vec()),
        ("etc/apt/sources.list.d/".into(), vec![]),
        ("etc/apt/sources.list.d/debian.list".into(), b"deb".to_vec()),
        ("etc/hostname".into(), b"lower".to_vec()),
    ];
    for r in &results {
        assert_eq!(r, &want);
    }
}

#[test]
fn opaque_marker_creates_a_missing_dir_and_at_root_hides_the_whole_lower_tree() {
    let s = Scratch::new();
    apply(&s.root, &[opaque("new/dir")]).unwrap();
    assert!(s.root.join("new/dir").is_dir());
    lower_tree(&s.root);
    apply(
        &s.root,
        &[file("keep", b"k"), opaque("."), file("etc/added", b"a")],
    )
    .unwrap();
    assert_eq!(
        listing(&s.root),
        vec![
            ("etc/".to_string(), vec![]),
            ("etc/added".to_string(), b"a".to_vec()),
            ("keep".to_string(), b"k".to_vec())
        ]
    );
    s.assert_outside_untouched();
}

#[test]
fn opaque_marker_through_a_symlinked_parent_is_confined() {
    let s = Scratch::new();
    let outside = s.outside.to_str().unwrap().to_string();
    // lnk -> outside resolves to ROOT/<outside path>, which is absent: created there.
    apply(&s.root, &[symlink("lnk", &outside), opaque("lnk")]).unwrap_err();
    apply(&s.root, &[symlink("l2", "../../.."), opaque("l2/outside")]).unwrap();
    assert!(s.root.join("outside").is_dir());
    s.assert_outside_untouched();
}
