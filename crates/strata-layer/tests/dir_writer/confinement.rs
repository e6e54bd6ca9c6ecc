//! Hostile symlinks and hard links: nothing lands outside the root.

use super::*;

#[test]
fn absolute_symlink_then_write_through_lands_inside_the_root() {
    let s = Scratch::new();
    let victim = host_victim("abs");
    // ROOT/tmp does not exist: the write fails, and never reaches the host /tmp.
    let r = apply(
        &s.root,
        &[
            symlink("link", "/tmp"),
            file(&format!("link/{victim}"), b"evil"),
        ],
    );
    assert!(r.is_err());
    assert!(!Path::new("/tmp").join(&victim).exists());
    // With ROOT/tmp present it lands there.
    apply(
        &s.root,
        &[
            dir("tmp"),
            symlink("link", "/tmp"),
            file(&format!("link/{victim}"), b"evil"),
        ],
    )
    .unwrap();
    assert_eq!(
        std::fs::read(s.root.join("tmp").join(&victim)).unwrap(),
        b"evil"
    );
    assert!(!Path::new("/tmp").join(&victim).exists());
    // `foo -> /` then foo/tmp/x.
    apply(
        &s.root,
        &[
            symlink("foo", "/"),
            file(&format!("foo/tmp/{victim}2"), b"x"),
        ],
    )
    .unwrap();
    assert!(s.root.join(format!("tmp/{victim}2")).exists());
    assert!(!Path::new("/tmp").join(format!("{victim}2")).exists());
    s.assert_outside_untouched();
}

#[test]
fn relative_dotdot_symlinks_then_write_through_are_confined() {
    let s = Scratch::new();
    let victim = host_victim("rel");
    let items = [
        symlink("link", "../../../../../../../../../../tmp"),
        file(&format!("link/{victim}"), b"evil"),
    ];
    let r = apply(&s.root, &items);
    assert!(r.is_err(), "ROOT/tmp does not exist");
    assert!(!Path::new("/tmp").join(&victim).exists());
    // The two-hop chain of GHSA-hfg8-hc9c-6c3h: inner/go_up -> .., inner/go_up/escape -> ../outside.
    let items = [
        dir("inner"),
        symlink("inner/go_up", ".."),
        symlink("inner/go_up/escape", "../outside"),
        file("inner/go_up/escape/newfile", b"evil"),
        // Nested: a/b -> ../../.., c -> a/b/outside.
        dir("a"),
        symlink("a/b", "../../.."),
        symlink("c", "a/b/outside"),
        file("c/nested", b"evil"),
    ];
    apply(&s.root, &items).unwrap_err();
    s.assert_outside_untouched();
    // With ROOT/outside present, both land in it.
    std::fs::create_dir(s.root.join("outside")).unwrap();
    apply(&s.root, &items).unwrap();
    assert!(s.root.join("outside/newfile").is_file());
    assert!(s.root.join("outside/nested").is_file());
    s.assert_outside_untouched();
}

#[test]
fn regular_file_replaces_a_symlink_to_an_outside_file() {
    let s = Scratch::new();
    apply(
        &s.root,
        &[symlink("x", &s.sentinel()), file("x", b"second\n")],
    )
    .unwrap();
    let md = lmeta(&s.root.join("x"));
    assert!(md.is_file());
    assert_eq!(std::fs::read(s.root.join("x")).unwrap(), b"second\n");
    s.assert_outside_untouched();
    // Also across layers: a lower symlink, then a file of the same name.
    std::os::unix::fs::symlink(s.sentinel(), s.root.join("y")).unwrap();
    apply(&s.root, &[file("y", b"")]).unwrap();
    assert!(lmeta(&s.root.join("y")).is_file());
    s.assert_outside_untouched();
}

#[test]
fn directory_replaces_a_symlink_then_file_goes_into_it() {
    let s = Scratch::new();
    let victim = host_victim("symdir");
    apply(
        &s.root,
        &[
            symlink("s", "/tmp"),
            dir("s"),
            file(&format!("s/{victim}"), b"x"),
        ],
    )
    .unwrap();
    assert!(lmeta(&s.root.join("s")).is_dir());
    assert!(s.root.join("s").join(&victim).is_file());
    assert!(!Path::new("/tmp").join(&victim).exists());
    // The reverse: a symlink replaces a directory, then a file through it.
    apply(&s.root, &[symlink("s", "/nowhere"), file("s/f", b"x")]).unwrap_err();
    assert!(lmeta(&s.root.join("s")).file_type().is_symlink());
}

#[test]
fn symlink_loop_then_write_fails_with_an_error() {
    let s = Scratch::new();
    let err = apply(
        &s.root,
        &[symlink("a", "b"), symlink("b", "a"), file("a/x", b"x")],
    )
    .unwrap_err();
    assert!(err.to_string().contains("too many symlink levels"), "{err}");
    let err = apply(&s.root, &[symlink("self", "self"), file("self/x", b"x")]).unwrap_err();
    assert!(err.to_string().contains("too many symlink levels"), "{err}");
    // Loops are fine as long as nobody goes through them.
    assert!(lmeta(&s.root.join("a")).file_type().is_symlink());
}

#[test]
fn hardlink_through_a_symlinked_dir_is_confined() {
    let s = Scratch::new();
    let outside = s.outside.to_str().unwrap().to_string();
    let err = apply(
        &s.root,
        &[symlink("d", &outside), hardlink("h", "d/sentinel")],
    )
    .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert!(!s.root.join("h").exists());
    // Relative escape: resolved in the root, `..` stops at the root.
    let err = apply(
        &s.root,
        &[
            symlink("up", "../../../.."),
            hardlink("h2", "up/outside/sentinel"),
        ],
    )
    .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    s.assert_outside_untouched();
}

#[test]
fn hardlink_to_a_symlink_pointing_outside_then_file_replaces_only_the_link() {
    let s = Scratch::new();
    let mut h = hardlink("h", "s");
    h.0.meta.mode = 0o777;
    apply(&s.root, &[symlink("s", &s.sentinel()), h]).unwrap();
    // h is a second name of the symlink itself, and no chmod went through it.
    let (sm, hm) = (lmeta(&s.root.join("s")), lmeta(&s.root.join("h")));
    assert!(hm.file_type().is_symlink());
    assert_eq!(sm.ino(), hm.ino());
    assert_eq!(sm.nlink(), 2);
    s.assert_outside_untouched();
    apply(&s.root, &[file("h", b"mine\n")]).unwrap();
    assert_eq!(std::fs::read(s.root.join("h")).unwrap(), b"mine\n");
    assert!(lmeta(&s.root.join("s")).file_type().is_symlink());
    assert_eq!(lmeta(&s.root.join("s")).nlink(), 1);
    s.assert_outside_untouched();
}

#[test]
fn hardlink_to_a_directory_is_refused() {
    let s = Scratch::new();
    let err = apply(&s.root, &[dir("d"), hardlink("h", "d")]).unwrap_err();
    assert!(err.to_string().contains("is a directory"), "{err}");
    assert!(!s.root.join("h").exists());
}

#[test]
fn hardlink_to_a_missing_target_names_both() {
    let s = Scratch::new();
    let err = apply(
        &s.root,
        &[hardlink("etc/os-release.link", "etc/os-release")],
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("etc/os-release.link") && msg.contains("`etc/os-release`"),
        "{msg}"
    );
    // With the target in the lower tree it links to it.
    std::fs::create_dir(s.root.join("etc")).unwrap();
    std::fs::write(s.root.join("etc/os-release"), b"ID=test\n").unwrap();
    apply(
        &s.root,
        &[hardlink("etc/os-release.link", "etc/os-release")],
    )
    .unwrap();
    assert_eq!(lmeta(&s.root.join("etc/os-release")).nlink(), 2);
}

#[test]
fn hardlink_to_itself_keeps_the_file() {
    let s = Scratch::new();
    apply(&s.root, &[file("x", b"content\n"), hardlink("x", "x")]).unwrap();
    assert_eq!(std::fs::read(s.root.join("x")).unwrap(), b"content\n");
    assert_eq!(lmeta(&s.root.join("x")).nlink(), 1);
    let err = apply(&s.root, &[hardlink("nope", "nope")]).unwrap_err();
    assert!(err.to_string().contains("does not exist"));
}

#[test]
fn hardlinks_group_shares_one_inode() {
    let s = Scratch::new();
    let long = "l".repeat(150);
    apply(
        &s.root,
        &[
            file("a", b"shared\n"),
            hardlink("b/a2", "a"),
            hardlink("b/a3", "b/a2"),
            hardlink("a4", "a"),
            file(&long, b"long"),
            hardlink("longlink", &long),
        ],
    )
    .unwrap();
    let ino = lmeta(&s.root.join("a")).ino();
    for n in ["a", "b/a2", "b/a3", "a4"] {
        let md = lmeta(&s.root.join(n));
        assert_eq!((md.ino(), md.nlink()), (ino, 4), "{n}");
    }
    assert_eq!(lmeta(&s.root.join("longlink")).nlink(), 2);
}

#[test]
fn whiteout_through_a_symlink_is_confined() {
    let s = Scratch::new();
    let outside = s.outside.to_str().unwrap().to_string();
    apply(
        &s.root,
        &[symlink("lnk", &outside), whiteout("lnk/sentinel")],
    )
    .unwrap();
    s.assert_outside_untouched();
    apply(
        &s.root,
        &[symlink("up", "../../.."), whiteout("up/outside/sentinel")],
    )
    .unwrap();
    s.assert_outside_untouched();
    // A dangling-symlink parent and a missing path are no-ops.
    apply(
        &s.root,
        &[
            symlink("dangling", "/nowhere"),
            whiteout("dangling/x"),
            whiteout("absent/y"),
        ],
    )
    .unwrap();
    // Whiteout of a symlink removes the link, not its target.
    apply(&s.root, &[symlink("tolnk", &s.sentinel())]).unwrap();
    apply(&s.root, &[whiteout("tolnk")]).unwrap();
    assert!(
        !s.root.join("tolnk").exists() && std::fs::symlink_metadata(s.root.join("tolnk")).is_err()
    );
    s.assert_outside_untouched();
}
