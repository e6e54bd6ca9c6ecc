//! Argument types more than one command takes.

use anyhow::{bail, Result};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::ValueEnum;
use strata_image::manifest::Platform;
use strata_layer::compress::Compression;

/// `--compress`: how layers are compressed.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compress {
    None,
    Gzip,
    Zstd,
}

impl Compress {
    /// `--compress` where layers must be compressed (registries, whose clients expect
    /// compressed layers): gzip or zstd.
    pub fn compressed() -> impl TypedValueParser<Value = Compress> {
        PossibleValuesParser::new(["gzip", "zstd"]).map(|s| match s.as_str() {
            "zstd" => Compress::Zstd,
            _ => Compress::Gzip,
        })
    }
}

impl From<Compress> for Compression {
    fn from(c: Compress) -> Self {
        match c {
            Compress::None => Compression::None,
            Compress::Gzip => Compression::Gzip,
            Compress::Zstd => Compression::Zstd,
        }
    }
}

/// `--platform OS/ARCH[/VARIANT]`.
pub fn parse_platform(s: &str) -> Result<Platform> {
    let parts: Vec<&str> = s.split('/').collect();
    let (os, arch, variant) = match parts[..] {
        [os, arch] => (os, arch, None),
        [os, arch, variant] => (os, arch, Some(variant.to_string())),
        _ => bail!("--platform must be OS/ARCH or OS/ARCH/VARIANT, not `{s}`"),
    };
    Ok(Platform {
        os: os.into(),
        architecture: arch.into(),
        variant,
        ..Platform::default()
    })
}
