//! `strata manifest|config|digest|ls|catalog|delete` and `strata tag` on a registry or a
//! layout: names and manifests, no layer moved (strata-image's `refs` does the work).

use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{ArgAction, Args};
use strata_image::{refs, OpenOptions, Transport};

use crate::args::parse_platform;
use crate::image::{registry_options, RegistryTimeout};
use crate::io::print_raw;
use crate::output::Output;
use crate::store::StoreArgs;

/// How to reach the image: platform, credentials, TLS, timeout.
#[derive(Args)]
pub struct Reach {
    /// Pick this platform (OS/ARCH[/VARIANT]) from a multi-platform image.
    #[arg(long, value_name = "OS/ARCH")]
    platform: Option<String>,
    /// Credentials for a registry (default: the auth files of podman and docker).
    #[arg(long, value_name = "USER:PASSWORD")]
    creds: Option<String>,
    /// Require HTTPS and a verified certificate (loopback registries may speak HTTP).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    tls_verify: bool,
    #[command(flatten)]
    timeout: RegistryTimeout,
}

impl Reach {
    fn options(&self, t: Option<&Transport>, store: &StoreArgs) -> Result<OpenOptions> {
        let mut o = OpenOptions::default();
        if let Some(p) = &self.platform {
            o.platform = parse_platform(p)?;
        }
        o.registry = registry_options(
            &o.registry,
            self.creds.as_deref(),
            self.tls_verify,
            self.timeout,
        )?;
        if matches!(t, Some(Transport::Strata { .. })) {
            o.store = Some(Arc::new(store.open()?));
        }
        Ok(o)
    }
}

/// A transport and how to reach it.
#[derive(Args)]
pub struct RefArgs {
    /// docker://REF, oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE[:REF] or
    /// strata:IMAGE.
    image: String,
    #[command(flatten)]
    reach: Reach,
}

impl RefArgs {
    fn open(&self, store: &StoreArgs) -> Result<(Transport, OpenOptions)> {
        let t: Transport = self.image.parse().context("bad image")?;
        let o = self.reach.options(Some(&t), store)?;
        Ok((t, o))
    }
}

pub fn manifest(args: RefArgs, store: &StoreArgs) -> Result<()> {
    let (t, o) = args.open(store)?;
    let m = refs::manifest(&t, &o).with_context(|| format!("cannot read {t}"))?;
    print_raw(&m.bytes)
}

pub fn config(args: RefArgs, store: &StoreArgs) -> Result<()> {
    let (t, o) = args.open(store)?;
    print_raw(&refs::config(&t, &o).with_context(|| format!("cannot read {t}"))?)
}

pub fn digest(args: RefArgs, store: &StoreArgs, out: &Output) -> Result<()> {
    let (t, o) = args.open(store)?;
    let m = refs::manifest(&t, &o).with_context(|| format!("cannot read {t}"))?;
    out.result(
        &serde_json::json!({"digest": m.digest.to_string(), "media_type": m.media_type}),
        || m.digest.to_string(),
    )
}

pub fn ls(args: RefArgs, store: &StoreArgs, out: &Output) -> Result<()> {
    let (t, o) = args.open(store)?;
    let tags = refs::tags(&t, &o).with_context(|| format!("cannot list {t}"))?;
    out.result(&tags, || tags.join("\n"))
}

pub fn catalog(host: &str, reach: Reach, store: &StoreArgs, out: &Output) -> Result<()> {
    let o = reach.options(None, store)?;
    let repos = refs::catalog(host, &o).with_context(|| format!("cannot list {host}"))?;
    out.result(&repos, || repos.join("\n"))
}

pub fn delete(args: RefArgs, store: &StoreArgs, out: &Output) -> Result<()> {
    let (t, o) = args.open(store)?;
    let d = refs::delete(&t, &o).with_context(|| format!("cannot delete {t}"))?;
    out.result(
        &serde_json::json!({"deleted": t.to_string(), "digest": d.to_string()}),
        || format!("deleted {t} ({d})"),
    )
}

/// Whether `strata tag SOURCE` names a registry or layout image (else a store image:
/// `oci:1` is the store's docker.io/library/oci:1 unless a directory `1` is there).
pub fn is_transport(source: &str) -> bool {
    source.starts_with("docker://")
        || source.strip_prefix("oci:").is_some_and(|rest| {
            let dir = rest.split_once(':').map_or(rest, |(d, _)| d);
            std::path::Path::new(dir).is_dir()
        })
}

pub fn tag(source: &str, tag: &str, store: &StoreArgs, out: &Output) -> Result<()> {
    let t: Transport = source.parse().context("bad image")?;
    let reach = Reach {
        platform: None,
        creds: None,
        tls_verify: true,
        timeout: RegistryTimeout {
            seconds: std::time::Duration::from_secs(30),
        },
    };
    let o = reach.options(Some(&t), store)?;
    let d = refs::tag(&t, tag, &o).with_context(|| format!("cannot tag {t}"))?;
    out.result(
        &serde_json::json!({"source": t.to_string(), "tag": tag, "digest": d.to_string()}),
        || format!("tagged {t} as {tag} ({d})"),
    )
}

/// `strata index create|append|remove`.
#[derive(clap::Subcommand)]
pub enum IndexCommand {
    /// Make DEST (docker://HOST/REPO:TAG or oci:DIR:NAME) an index of the images SRC...,
    /// which must be in that repository or layout already; platforms from their configs.
    Create {
        destination: String,
        #[arg(required = true)]
        images: Vec<String>,
        #[command(flatten)]
        reach: Reach,
    },
    /// Add images to DEST's index (an entry of the same platform is replaced).
    Append {
        destination: String,
        #[arg(required = true)]
        images: Vec<String>,
        #[command(flatten)]
        reach: Reach,
    },
    /// Take the entries of the platform given with --platform (OS/ARCH[/VARIANT]) out
    /// of DEST's index.
    Remove {
        destination: String,
        #[command(flatten)]
        reach: Reach,
    },
}

pub fn index(cmd: IndexCommand, store: &StoreArgs, out: &Output) -> Result<()> {
    use strata_image::edit::index::{edit_index, IndexChange};
    let parse_all = |v: &[String]| -> Result<Vec<Transport>> {
        v.iter()
            .map(|s| s.parse().with_context(|| format!("bad image `{s}`")))
            .collect()
    };
    let (dest, change, reach) = match cmd {
        IndexCommand::Create {
            destination,
            images,
            reach,
        } => (destination, IndexChange::Create(parse_all(&images)?), reach),
        IndexCommand::Append {
            destination,
            images,
            reach,
        } => (destination, IndexChange::Append(parse_all(&images)?), reach),
        IndexCommand::Remove { destination, reach } => {
            let Some(p) = reach.platform.as_deref() else {
                anyhow::bail!("index remove needs --platform OS/ARCH[/VARIANT]");
            };
            (
                destination,
                IndexChange::Remove(vec![parse_platform(p)?]),
                reach,
            )
        }
    };
    let t: Transport = dest.parse().context("bad destination")?;
    let o = reach.options(Some(&t), store)?;
    let d = edit_index(&t, &change, &o).with_context(|| format!("cannot write the index {t}"))?;
    out.result(
        &serde_json::json!({"index": t.to_string(), "digest": d.to_string()}),
        || format!("index {t} is {d}"),
    )
}
