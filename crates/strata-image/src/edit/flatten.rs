//! The merged filesystem of an image: its layers applied in order (whiteouts and opaque
//! directories taking effect) into a staging directory, then packed as one tar; what
//! `docker export` gives of a fresh container, and the one layer of a flattened image.
//!
//! Each layer streams from its source verified (blob digest and diffID) as it is
//! applied; the directory is packed in the deterministic order of
//! [`strata_layer::pack`]. Applied by a user other than root, owners and devices are
//! not kept (as `umoci unpack --rootless`).

use std::io::Write;
use std::path::Path;

use strata_layer::compress::Compression;
use strata_layer::pack::PackSummary;
use strata_layer::unpack::{unpack, UnpackOptions};

use crate::transport::{select, ImageSource, SourceImage};
use crate::{Error, OpenOptions, Transport};

/// Applies every layer of `image` (from `source`) onto the empty directory `root`;
/// returns what the applies warned about.
pub fn merge(
    source: &dyn ImageSource,
    image: &SourceImage,
    root: &Path,
) -> Result<Vec<String>, Error> {
    let mut warnings = Vec::new();
    for info in &image.layers {
        let mut tar = source.layer(image, info.index)?.tar()?;
        let done = unpack(&mut tar, root, UnpackOptions::default())?;
        // Whatever the tar reader left (padding past the end-of-archive) is read and
        // the digests checked.
        tar.finish()?;
        warnings.extend(
            done.warnings
                .into_iter()
                .map(|w| format!("layer {}: {w}", info.index)),
        );
    }
    Ok(warnings)
}

/// The merged filesystem of `image` as one tar, compressed as asked, written to `out`;
/// `staging` holds the merged tree meanwhile.
pub fn export<W: Write + Send>(
    source: &dyn ImageSource,
    image: &SourceImage,
    staging: &Path,
    out: W,
    compression: Compression,
) -> Result<PackSummary, Error> {
    let dir = tempfile::Builder::new()
        .prefix("strata-merge-")
        .tempdir_in(staging)
        .map_err(|e| {
            Error::io(
                format!("cannot make a directory in {}", staging.display()),
                e,
            )
        })?;
    let root = dir.path().join("rootfs");
    std::fs::create_dir(&root)
        .map_err(|e| Error::io(format!("cannot create {}", root.display()), e))?;
    let mut warnings = merge(source, image, &root)?;
    let mut packed = strata_layer::pack::pack(&root, out, compression)?;
    warnings.append(&mut packed.warnings);
    packed.warnings = warnings;
    Ok(packed)
}

/// [`export`] of the image the transport string `t` names.
pub fn export_transport<W: Write + Send>(
    t: &Transport,
    options: &OpenOptions,
    out: W,
    compression: Compression,
) -> Result<PackSummary, Error> {
    let mut source = t.open_source(options)?;
    let listed = source.list()?;
    let skipped = source.skipped()?;
    let chosen = select(&source.describe(), listed, &skipped, &t.selector())?;
    let [one] = chosen.as_slice() else {
        return Err(Error::Selection {
            source_name: source.describe(),
            reason: format!("{} images match; name one", chosen.len()),
        });
    };
    let image = source.open_image(one)?;
    if image.config.os() == "windows" {
        return Err(Error::Unsupported(format!(
            "{t}: exporting a Windows image is refused: its layers are Windows layer diffs \
             (Files/, Hives/, tombstones) on a base layer that is usually foreign (not \
             downloadable from where it is pushed); import its layers with `strata wclayer \
             import` and merge them with `strata wclayer extract`"
        )));
    }
    export(source.as_ref(), &image, &options.staging, out, compression)
}
