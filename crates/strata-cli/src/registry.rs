//! `strata pull` and `strata push`: copies between a registry (`docker://`) and the store,
//! with the store's own bookkeeping (kept compressed blobs, where blobs are known to be).

use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{ArgAction, Args};
use strata_image::registry::{RegistryDestination, RegistrySource};
use strata_image::store::{remember_push, StoreDestination, StoreSource};
use strata_image::{ImageSelector, OpenOptions, Reference, RegistryOptions};
use strata_store::ApplyOptions;

use crate::args::{parse_platform, Compress};
use crate::image::{copy_options, registry_options, run_copy, RegistryTimeout};
use crate::output::Output;
use crate::store::StoreArgs;

/// How to reach the registry: who we are and whether TLS is required.
#[derive(Args)]
pub struct RegistryArgs {
    /// Credentials (default: what the auth files of podman and docker hold for the
    /// registry: ${XDG_RUNTIME_DIR}/containers/auth.json, ~/.docker/config.json).
    #[arg(long, value_name = "USER:PASSWORD")]
    creds: Option<String>,
    /// Require HTTPS and a verified certificate (loopback registries may speak plain
    /// HTTP either way).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    tls_verify: bool,
    /// Layers moved at once (default: one per core, at least two).
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    #[command(flatten)]
    timeout: RegistryTimeout,
}

#[derive(Args)]
pub struct PullArgs {
    /// The image: [REGISTRY/]REPOSITORY[:TAG|@DIGEST] (docker.io and :latest by
    /// default; a docker:// prefix may be given).
    reference: String,
    /// The platform (OS/ARCH[/VARIANT]) to pull from a multi-platform image (default:
    /// this machine's).
    #[arg(long, value_name = "OS/ARCH")]
    platform: Option<String>,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Args)]
pub struct PushArgs {
    /// The store's image: a name, an ID or a unique prefix of one.
    image: String,
    /// Where to: [REGISTRY/]REPOSITORY[:TAG|@DIGEST] (default: the image's name, which
    /// then must be one; a docker:// prefix may be given).
    reference: Option<String>,
    /// How layers are compressed in the registry. A layer the store does not yet hold in
    /// that compression is compressed once and kept, so the next push of it is instant.
    #[arg(long, default_value = "gzip", value_parser = Compress::compressed())]
    compress: Compress,
    #[command(flatten)]
    registry: RegistryArgs,
}

fn reference(s: &str) -> Result<Reference> {
    let r = s.strip_prefix("docker://").unwrap_or(s);
    Reference::parse(r).with_context(|| format!("`{s}` is not an image reference"))
}

impl RegistryArgs {
    fn options(&self) -> Result<RegistryOptions> {
        registry_options(
            &RegistryOptions::default(),
            self.creds.as_deref(),
            self.tls_verify,
            self.timeout,
        )
    }

    fn jobs(&self) -> usize {
        self.jobs
            .unwrap_or_else(|| OpenOptions::default().store_jobs)
            .max(1)
    }
}

/// `strata pull`: the image into the store, named by the reference's tag; layers the
/// store has (by chain ID) are not fetched.
pub fn pull(args: PullArgs, store: &StoreArgs, out: &Output) -> Result<()> {
    let store = Arc::new(store.open()?);
    let reference = reference(&args.reference)?;
    let platform = match &args.platform {
        Some(p) => parse_platform(p)?,
        None => strata_image::manifest::Platform::host(),
    };
    let jobs = args.registry.jobs();
    let mut source = RegistrySource::open(&reference, platform, &args.registry.options()?)?;
    let mut destination = StoreDestination::new(store, None, ApplyOptions::default(), jobs);
    run_copy(
        &mut source,
        &mut destination,
        copy_options(ImageSelector::Only, Some(jobs)),
        (&format!("docker://{reference}"), "strata:"),
        false,
        out,
    )?;
    Ok(())
}

/// `strata push`: the image's compressed layers (made once and kept where missing),
/// config and manifest to the registry; blobs it has are not sent, blobs another of its
/// repositories is known to hold are mounted from there.
pub fn push(args: PushArgs, store: &StoreArgs, out: &Output) -> Result<()> {
    let store = Arc::new(store.open()?);
    let target = match &args.reference {
        Some(r) => reference(r)?,
        None => reference(&args.image)
            .with_context(|| format!("give a reference to push `{}` to", args.image))?,
    };
    let compress = args.compress.into();
    let mut options = args.registry.options()?;
    options.compress = compress;
    let staging = store.staging()?;
    let mut source = StoreSource::new(store.clone(), std::slice::from_ref(&args.image), compress)?
        .keep_compressed();
    let mut destination = RegistryDestination::open(&target, staging.path(), &options)?;
    let report = run_copy(
        &mut source,
        &mut destination,
        copy_options(ImageSelector::Only, Some(args.registry.jobs())),
        (
            &format!("strata:{}", args.image),
            &format!("docker://{target}"),
        ),
        false,
        out,
    )?;
    remember_push(&store, &target, &report)?;
    staging.done()?;
    Ok(())
}
