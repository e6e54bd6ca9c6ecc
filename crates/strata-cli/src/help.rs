//! What `--help`, the man pages and the completions say beyond the clap definition: an
//! example per command, the transports, the environment variables and the exit codes.
//!
//! Everything is attached to the clap definition in [`command`], so the parser, `--help`,
//! `strata(1)` and its per-command pages, and the completion scripts all come from one
//! place. A command added to the definition gets its page and completions by itself;
//! `every_command_has_an_example` fails until it gets an entry in [`EXAMPLES`] too.

use clap::CommandFactory;

/// The version `strata --version` prints: the crate version and the git commit it was
/// built from (`build.rs`; "unknown" outside a git checkout unless STRATA_GIT_COMMIT is set).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("STRATA_GIT_COMMIT"),
    ")"
);

/// One example: what it does, and the command line (runnable as written, given its files).
pub struct Example {
    pub what: &'static str,
    pub line: &'static str,
}

const fn ex(what: &'static str, line: &'static str) -> Example {
    Example { what, line }
}

/// The examples of each command, by its path under `strata` ("" is `strata` itself). The
/// first one is the one `--help` shows; the man page shows them all.
pub const EXAMPLES: &[(&str, &[Example])] = &[
    (
        "",
        &[
            ex(
                "Convert a docker save archive into an OCI layout",
                "strata copy docker-archive:app.tar oci:app-oci:latest",
            ),
            ex(
                "Load a docker save archive into the store",
                "strata load -i app.tar",
            ),
        ],
    ),
    (
        "layer",
        &[ex(
            "Unpack a layer onto a directory",
            "strata layer unpack -i layer.tar.gz rootfs/",
        )],
    ),
    (
        "layer unpack",
        &[
            ex(
                "Apply a layer (plain, gzip or zstd) onto a directory, created if missing",
                "strata layer unpack -i layer.tar.gz rootfs/",
            ),
            ex(
                "Also record a recipe, to rebuild the tar byte for byte later",
                "strata layer unpack -i layer.tar rootfs/ --recipe layer.recipe",
            ),
            ex(
                "Read the layer from standard input",
                "strata layer unpack -i - rootfs/ < layer.tar.zst",
            ),
        ],
    ),
    (
        "layer pack",
        &[
            ex(
                "Pack a directory (its root is not an entry) into a deterministic layer",
                "strata layer pack rootfs/ -o layer.tar",
            ),
            ex(
                "The same, zstd-compressed",
                "strata layer pack rootfs/ -o layer.tar.zst --compress zstd",
            ),
        ],
    ),
    (
        "layer repack",
        &[ex(
            "Rebuild the tar a directory was unpacked from, byte for byte",
            "strata layer repack rootfs/ --recipe layer.recipe -o layer.tar",
        )],
    ),
    (
        "layer digest",
        &[ex(
            "Print the diffID and the blob digest of a layer",
            "strata layer digest layer.tar.gz",
        )],
    ),
    (
        "layer ls",
        &[
            ex(
                "List a layer file's entries like tar tv (whiteouts as D, opaque directories as O)",
                "strata layer ls layer.tar.gz",
            ),
            ex(
                "List the store's layers, init layers included",
                "strata layer ls --all",
            ),
        ],
    ),
    (
        "layer create",
        &[
            ex(
                "Create an empty read-only layer, to be filled by apply",
                "strata layer create base",
            ),
            ex(
                "Create a container layer on it (on its init layer, base-init... ctr-init)",
                "strata layer create --rw --parent base ctr",
            ),
        ],
    ),
    (
        "layer apply",
        &[ex(
            "Fill a new layer from a layer tar; prints its diffID and size",
            "strata layer apply base -i layer.tar.gz",
        )],
    ),
    (
        "layer mount",
        &[ex(
            "Mount a layer and print the path of its merged view",
            "strata layer mount ctr",
        )],
    ),
    (
        "layer umount",
        &[ex(
            "Undo one mount (the last one unmounts)",
            "strata layer umount ctr",
        )],
    ),
    (
        "layer diff",
        &[
            ex(
                "Write a container layer's changes as a zstd layer",
                "strata layer diff ctr -o ctr.tar.zst --compress zstd",
            ),
            ex(
                "An applied layer's original tar, bit-exact, to standard output",
                "strata layer diff base -o -",
            ),
        ],
    ),
    (
        "layer changes",
        &[ex(
            "List what a layer adds (A), changes (C) and deletes (D)",
            "strata layer changes ctr",
        )],
    ),
    (
        "layer diff-size",
        &[ex(
            "Print the bytes of file data a layer adds or rewrites",
            "strata layer diff-size ctr",
        )],
    ),
    (
        "layer inspect",
        &[ex(
            "Show a layer's parents, diffID, sizes, mounts and paths as JSON",
            "strata --json layer inspect base",
        )],
    ),
    (
        "layer exists",
        &[ex(
            "Test whether a layer exists (exit status 0 or 1)",
            "strata layer exists base",
        )],
    ),
    (
        "layer rm",
        &[ex(
            "Remove layers, children first",
            "strata layer rm ctr base",
        )],
    ),
    (
        "wclayer",
        &[ex(
            "Make a Windows layer of a Linux root filesystem tar",
            "strata wclayer from-rootfs -i rootfs.tar -o windows-layer.tar",
        )],
    ),
    (
        "wclayer import",
        &[
            ex(
                "Import a Windows base layer tar into a layer folder",
                "strata wclayer import -i base.tar layers/base",
            ),
            ex(
                "Import the next layer on it (parents nearest first, as hcsshim takes them)",
                "strata wclayer import -i app.tar.gz layers/app --parent layers/base",
            ),
        ],
    ),
    (
        "wclayer export",
        &[ex(
            "Export a layer folder back to a tar",
            "strata wclayer export layers/app -o app.tar --parent layers/base",
        )],
    ),
    (
        "wclayer from-rootfs",
        &[
            ex(
                "Make a Windows layer (BuildKit's security descriptors) of a Linux rootfs tar",
                "strata wclayer from-rootfs -i rootfs.tar -o layer.tar",
            ),
            ex(
                "With ko's and crane's security descriptor instead",
                "strata wclayer from-rootfs -i rootfs.tar -o layer.tar --sd ko",
            ),
        ],
    ),
    (
        "wclayer inspect",
        &[
            ex(
                "List attributes, times, SDDL, EAs and streams of a Windows layer tar",
                "strata wclayer inspect layer.tar",
            ),
            ex(
                "The same for a layer folder on its parents, as JSON",
                "strata --json wclayer inspect layers/app --parent layers/base",
            ),
        ],
    ),
    (
        "wclayer extract",
        &[ex(
            "Write the merged files of a chain (top layer first) into a directory",
            "strata wclayer extract layers/app layers/base view/",
        )],
    ),
    (
        "copy",
        &[
            ex(
                "Convert a docker save archive into an OCI layout",
                "strata copy docker-archive:app.tar oci:app-oci:latest",
            ),
            ex(
                "An OCI layout's image as an archive docker load reads",
                "strata copy oci:app-oci:latest docker-archive:app-again.tar:example/app:1",
            ),
            ex(
                "Into an OCI archive, layers zstd-compressed",
                "strata copy --compress zstd docker-archive:app.tar oci-archive:app.oci.tar",
            ),
            ex(
                "Push to a registry",
                "strata copy oci:app-oci:latest docker://localhost:5000/example/app:1",
            ),
            ex(
                "Pull from a registry into an OCI layout",
                "strata copy docker://localhost:5000/example/app:1 oci:pulled:1",
            ),
            ex(
                "Into the store",
                "strata copy oci:app-oci:latest strata:example/app:2",
            ),
        ],
    ),
    (
        "pull",
        &[ex(
            "Pull an image into the store (layers it has are not fetched)",
            "strata pull docker.io/library/busybox:latest",
        )],
    ),
    (
        "push",
        &[ex(
            "Push an image of the store to a registry under another name",
            "strata push example/app:1 localhost:5000/example/app:1",
        )],
    ),
    ("images", &[ex("List the store's images", "strata images")]),
    (
        "inspect",
        &[
            ex("Show an image of the store", "strata inspect example/app:1"),
            ex(
                "Show the manifest of an image in an archive, as stored",
                "strata inspect --raw docker-archive:app.tar",
            ),
        ],
    ),
    (
        "tag",
        &[ex(
            "Give an image another name",
            "strata tag example/app:1 localhost:5000/example/app:1",
        )],
    ),
    (
        "rmi",
        &[ex(
            "Remove an image, and the layers nothing else needs",
            "strata rmi example/app:1",
        )],
    ),
    (
        "history",
        &[ex(
            "Show an image's history, newest first",
            "strata history example/app:1",
        )],
    ),
    (
        "save",
        &[
            ex(
                "Write an image to a Docker 25+ archive (docker load reads it)",
                "strata save example/app:1 -o app.tar",
            ),
            ex(
                "As an OCI archive",
                "strata save example/app:1 -o app.oci.tar --format oci-archive",
            ),
        ],
    ),
    (
        "load",
        &[ex(
            "Read the images of an archive (plain, gzip or zstd) into the store",
            "strata load -i app.tar",
        )],
    ),
    (
        "commit",
        &[ex(
            "Make a container layer's changes the next layer of a new image",
            "strata commit ctr example/app:2 -m \"what changed\"",
        )],
    ),
    (
        "import-dir",
        &[ex(
            "Make a one-layer image of a directory",
            "strata import-dir rootfs/ example/app:1",
        )],
    ),
    (
        "cleanup",
        &[ex(
            "Repair what crashed processes left in the store",
            "strata cleanup",
        )],
    ),
    (
        "fsck",
        &[
            ex("Check every layer of the store", "strata fsck"),
            ex(
                "Remove what is broken (never what is sound)",
                "strata fsck --repair",
            ),
        ],
    ),
    (
        "completion",
        &[
            ex(
                "Load completions into the running bash",
                "source <(strata completion bash)",
            ),
            ex(
                "Install zsh completions for one user",
                "strata completion zsh > ~/.zfunc/_strata",
            ),
        ],
    ),
    (
        "snapshotter",
        &[ex(
            "Serve the store to containerd as the proxy snapshotter `strata`",
            "strata snapshotter --address /run/strata/snapshotter.sock",
        )],
    ),
    (
        "mutate",
        &[ex(
            "Set the entrypoint and an environment variable (no layer moves)",
            "strata mutate docker://localhost:5000/app:1 docker://localhost:5000/app:2 --entrypoint '[\"/app\"]' --env K=V",
        )],
    ),
    (
        "append",
        &[ex(
            "Add a directory as a new layer on top of a base image",
            "strata append oci:layout:base oci:layout:app --layer ./build",
        )],
    ),
    (
        "flatten",
        &[ex(
            "Squash an image into one layer, whiteouts applied",
            "strata flatten oci:layout:app oci:layout:flat",
        )],
    ),
    (
        "rebase",
        &[ex(
            "Move an image from one base to a patched one",
            "strata rebase docker://localhost:5000/app:1 docker://localhost:5000/app:2 --old-base docker://localhost:5000/base:1 --new-base docker://localhost:5000/base:2",
        )],
    ),
    (
        "export",
        &[ex(
            "Write an image's merged filesystem as one tar, as docker export",
            "strata export oci:layout:app -o rootfs.tar",
        )],
    ),
    (
        "index",
        &[ex(
            "Make a multi-platform index of two images of one layout",
            "strata index create oci:layout:multi oci:layout:amd64 oci:layout:arm64",
        )],
    ),
    (
        "index create",
        &[ex(
            "Make a multi-platform index of two images of one repository",
            "strata index create docker://localhost:5000/app:multi docker://localhost:5000/app:amd64 docker://localhost:5000/app:arm64",
        )],
    ),
    (
        "index append",
        &[ex(
            "Add an image to an index (replacing its platform's entry)",
            "strata index append oci:layout:multi oci:layout:riscv",
        )],
    ),
    (
        "index remove",
        &[ex(
            "Take a platform out of an index",
            "strata index remove oci:layout:multi --platform linux/arm64",
        )],
    ),
    (
        "manifest",
        &[ex(
            "Print an image's manifest as stored",
            "strata manifest docker://localhost:5000/app:1",
        )],
    ),
    (
        "config",
        &[ex(
            "Print an image's config",
            "strata config oci:layout:app",
        )],
    ),
    (
        "digest",
        &[ex(
            "Print the digest of an image's manifest",
            "strata digest docker://localhost:5000/app:1",
        )],
    ),
    (
        "ls",
        &[ex(
            "List a repository's tags",
            "strata ls docker://localhost:5000/app",
        )],
    ),
    (
        "catalog",
        &[ex(
            "List a registry's repositories",
            "strata catalog localhost:5000",
        )],
    ),
    (
        "delete",
        &[ex(
            "Delete a manifest from a registry",
            "strata delete docker://localhost:5000/app:old",
        )],
    ),
];

/// The transports of image commands (copy, inspect), as man pages and `copy --help` list them.
pub const TRANSPORTS: &[(&str, &str)] = &[
    ("docker-archive:PATH[:REF]", "A docker save archive: Docker 25+ or legacy layout, podman's, skopeo's, containerd's; plain, gzip or zstd; /dev/stdin works. REF is a name, or @N for the N-th image."),
    ("oci:DIR[:REF]", "An OCI image layout directory; REF is a tag (org.opencontainers.image.ref.name)."),
    ("oci-archive:PATH[:REF]", "A tar of an OCI image layout."),
    ("docker://[REGISTRY/]REPO[:TAG|@DIGEST]", "A registry; a name without a registry is Docker Hub's (busybox is docker.io/library/busybox:latest)."),
    ("strata:IMAGE", "An image of the store (--root): a name, an image ID or a unique prefix of one."),
];

/// The environment variables strata reads.
pub const ENVIRONMENT: &[(&str, &str)] = &[
    ("STRATA_ROOT", "The store's root directory, as --root (default: /var/lib/strata as root, else $XDG_DATA_HOME/strata, else ~/.local/share/strata). Nothing is written there until a store command first runs."),
    ("STRATA_DRIVER", "The storage driver of a new store, as --driver: overlay or vfs."),
    ("STRATA_LOCK_TIMEOUT", "How long to wait for another process's store lock, as --lock-timeout."),
    ("STRATA_TMPDIR", "Where copy spools pipes, compressed archives and layers pushed to registries, as --tmpdir (default: $TMPDIR or /tmp)."),
    ("STRATA_REGISTRY_TIMEOUT", "How long a registry may keep us waiting, as --registry-timeout (default: 30 s)."),
    ("REGISTRY_AUTH_FILE", "The containers-auth.json(5) file read first for registry credentials (default: $XDG_RUNTIME_DIR/containers/auth.json); then $XDG_CONFIG_HOME/containers/auth.json and $DOCKER_CONFIG/config.json (default ~/.docker/config.json), as podman and docker login write them."),
    ("SSL_CERT_FILE", "A PEM bundle of the certificate authorities registries are checked against, instead of /etc/ssl/certs/ca-certificates.crt (the *.crt files of /etc/containers/certs.d/HOST/ and /etc/docker/certs.d/HOST/ count either way)."),
];

/// The exit statuses.
pub const EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "Success."),
    ("1", "An error (the message on standard error says what, where, and what to do where there is something to do); `layer exists`: the layer does not exist; `fsck`: problems were found (and --repair was not given)."),
    ("2", "The command line is wrong (an unknown option, a missing argument)."),
    ("141", "Standard output was closed early (e.g. piped into head)."),
];

/// The examples of the command at `path` (words after `strata`, joined by spaces).
pub fn examples(path: &str) -> &'static [Example] {
    EXAMPLES
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, e)| *e)
        .unwrap_or(&[])
}

/// The clap definition with the version, the examples and the top-level notes attached:
/// what main parses with and what the man pages and completions are made from.
pub fn command() -> clap::Command {
    let cmd = crate::Cli::command()
        .version(VERSION)
        .after_long_help(top_notes());
    attach(cmd, "")
}

fn attach(mut cmd: clap::Command, path: &str) -> clap::Command {
    if let Some(first) = examples(path).first() {
        let text = format!("Example: {}:\n  {}", lower_first(first.what), first.line);
        if path.is_empty() {
            let long = format!("{text}\n\n{}", top_notes());
            cmd = cmd.after_help(text).after_long_help(long);
        } else {
            cmd = cmd.after_help(text);
        }
    }
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    for name in names {
        let sub_path = if path.is_empty() {
            name.clone()
        } else {
            format!("{path} {name}")
        };
        cmd = cmd.mut_subcommand(&name, |s| attach(s, &sub_path));
    }
    cmd
}

/// "Convert an image" as "convert an image" (an initialism stays as it is).
pub fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match (c.next(), c.clone().next()) {
        (Some(f), Some(n)) if !n.is_uppercase() => f.to_lowercase().chain(c).collect(),
        _ => s.to_owned(),
    }
}

/// `strata --help` (long form): where the rest is.
fn top_notes() -> String {
    let mut s = String::from("Environment:\n");
    for (name, _) in ENVIRONMENT {
        s.push_str(&format!("  {name}\n"));
    }
    s.push_str("\nExit status: 0 success, 1 error, 2 bad command line, 141 output closed.\n");
    s.push_str("More: man strata, man strata-COMMAND, /usr/share/doc/strata/docs/.");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command path of the definition, `strata` itself as "".
    fn paths(cmd: &clap::Command, prefix: &str, out: &mut Vec<String>) {
        out.push(prefix.to_owned());
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            if sub.get_name() == "help" {
                continue;
            }
            let p = if prefix.is_empty() {
                sub.get_name().to_owned()
            } else {
                format!("{prefix} {}", sub.get_name())
            };
            paths(sub, &p, out);
        }
    }

    /// Shell words of an example line: quotes removed, redirections and what they name
    /// dropped; None for lines that are not a plain strata command (`source <(...)`).
    fn words(line: &str) -> Option<Vec<String>> {
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut quote = None;
        let mut in_word = false;
        for c in line.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), c) => cur.push(c),
                (None, '"' | '\'') => {
                    quote = Some(c);
                    in_word = true;
                }
                (None, ' ') => {
                    if in_word {
                        out.push(std::mem::take(&mut cur));
                    }
                    in_word = false;
                }
                (None, c) => {
                    cur.push(c);
                    in_word = true;
                }
            }
        }
        if in_word {
            out.push(cur);
        }
        if out.first().map(String::as_str) != Some("strata") {
            return None;
        }
        let mut kept = Vec::new();
        let mut skip = false;
        for w in out {
            if skip {
                skip = false;
            } else if w == "<" || w == ">" || w == "2>" {
                skip = true;
            } else {
                kept.push(w);
            }
        }
        Some(kept)
    }

    #[test]
    fn every_command_has_an_example() {
        let mut all = Vec::new();
        paths(&command(), "", &mut all);
        let missing: Vec<_> = all.iter().filter(|p| examples(p).is_empty()).collect();
        assert!(
            missing.is_empty(),
            "commands without an example in help::EXAMPLES: {missing:?}"
        );
        let stale: Vec<_> = EXAMPLES
            .iter()
            .map(|(p, _)| *p)
            .filter(|p| !all.iter().any(|a| a == p))
            .collect();
        assert!(stale.is_empty(), "examples of no command: {stale:?}");
    }

    /// Each example parses with the definition, into the command it is listed under.
    #[test]
    fn every_example_parses_as_its_command() {
        let mut checked = 0;
        for (path, list) in EXAMPLES {
            for e in *list {
                let Some(argv) = words(e.line) else { continue };
                let m = command()
                    .try_get_matches_from(&argv)
                    .unwrap_or_else(|err| panic!("`{}` does not parse: {err}", e.line));
                let mut got = Vec::new();
                let mut at = &m;
                while let Some((name, sub)) = at.subcommand() {
                    got.push(name);
                    at = sub;
                }
                // A path's examples may run one of its subcommands (`layer`: unpack).
                let got = got.join(" ");
                assert!(
                    got == *path || path.is_empty() || got.starts_with(&format!("{path} ")),
                    "`{}` runs `{got}`, not `{path}`",
                    e.line
                );
                checked += 1;
            }
        }
        assert!(checked > 40, "only {checked} examples checked");
    }

    #[test]
    fn help_shows_one_example() {
        let help = command()
            .find_subcommand_mut("copy")
            .expect("copy")
            .render_help()
            .to_string();
        assert!(
            help.contains("Example: convert a docker save archive into an OCI layout:\n  strata copy docker-archive:app.tar oci:app-oci:latest"),
            "{help}"
        );
        assert_eq!(help.matches("\n  strata ").count(), 1, "{help}");
    }

    #[test]
    fn version_names_the_commit() {
        let v = command().render_version();
        assert!(
            v.starts_with(&format!("strata {} (commit ", env!("CARGO_PKG_VERSION"))),
            "{v}"
        );
        let commit = env!("STRATA_GIT_COMMIT");
        assert!(
            commit == "unknown"
                || (commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit())),
            "{commit}"
        );
    }
}
