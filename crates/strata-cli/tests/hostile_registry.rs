//! A registry that accepts connections and never answers: `pull` and `copy` fail with a
//! timeout after `--registry-timeout` (or `STRATA_REGISTRY_TIMEOUT`), not after minutes.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use strata_registry_testkit::proxy::Silent;

#[test]
fn a_silent_registry_fails_pull_and_copy_after_the_registry_timeout() {
    let silent = Silent::start();
    let work = tempdir();
    let root = work.path().join("store");
    let image = format!("127.0.0.1:{}/strata/silent:1", silent.port);
    let runs: [(Vec<String>, Option<&str>); 3] = [
        (
            vec!["pull".into(), "--registry-timeout=2s".into(), image.clone()],
            None,
        ),
        (vec!["pull".into(), image.clone()], Some("2")),
        (
            vec![
                "copy".into(),
                format!("docker://{image}"),
                format!("oci:{}:x", work.path().join("out").display()),
            ],
            Some("2"),
        ),
    ];
    for (args, env) in runs {
        let mut cmd = strata_cmd(["--root"]);
        cmd.arg(&root).args(&args);
        if let Some(v) = env {
            cmd.env("STRATA_REGISTRY_TIMEOUT", v);
        }
        let t = Instant::now();
        let run = run_with_timeout(cmd, Duration::from_secs(30));
        let took = t.elapsed();
        run.assert_strata_error();
        assert!(run.stderr.contains("timeout"), "{args:?}: {}", run.stderr);
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(6),
            "{args:?} took {took:?}"
        );
    }
    assert!(!work.path().join("out").exists());
    let bad = strata(["pull", "--registry-timeout=0", &image]);
    assert_eq!(bad.status.code(), Some(2), "a usage error");
    assert!(bad.stderr.contains("at least one second"), "{}", bad.stderr);
}
