//! `rebase`: an image's bottom layers (its old base's) replaced by a new base's.
//!
//! The old base's layers must be exactly the bottom of the image (same diffIDs, in
//! order), else nothing is done. The result's layers are the new base's, then the
//! image's own above the old base, each streamed from where it is (a registry mounts
//! the new base's layers from their repository); its config is the image's, with the
//! rootfs and history of the new base below its own entries, and its manifest names the
//! new base in the annotations the OCI spec suggests (`org.opencontainers.image.base.name`
//! and `.digest`).

use serde_json::Value;

use crate::gojson;
use crate::ids::chain_ids;
use crate::manifest::{Descriptor, LayerType, Manifest};
use crate::stream::{LayerInfo, LayerStream};
use crate::transport::{ImageSource, ImageSummary, SourceImage};
use crate::{Error, ImageConfig};

/// The OCI annotation naming the base image a rebased image now sits on.
pub const BASE_NAME: &str = "org.opencontainers.image.base.name";
/// The OCI annotation holding that base image's manifest digest.
pub const BASE_DIGEST: &str = "org.opencontainers.image.base.digest";

/// An opened image and the source it streams from.
pub struct Opened {
    /// Where the image's blobs stream from.
    pub source: Box<dyn ImageSource>,
    /// The image: manifest, config, layers.
    pub image: SourceImage,
}

impl Opened {
    /// Opens the one image the transport string `t` names.
    pub fn open(t: &crate::Transport, options: &crate::OpenOptions) -> Result<Opened, Error> {
        let mut source = t.open_source(options)?;
        let listed = source.list()?;
        let skipped = source.skipped()?;
        let chosen = crate::select(&source.describe(), listed, &skipped, &t.selector())?;
        let [one] = chosen.as_slice() else {
            return Err(Error::Selection {
                source_name: source.describe(),
                reason: format!("{} images match; name one", chosen.len()),
            });
        };
        let image = source.open_image(one)?;
        Ok(Opened { source, image })
    }
}

/// The image rebased; an [`ImageSource`] of one image.
pub struct RebasedSource {
    image_src: Opened,
    new_base: Opened,
    /// Layers of the image that were the old base's.
    old_count: usize,
    result: SourceImage,
}

fn history(config: &ImageConfig) -> Result<Vec<Value>, Error> {
    let v: Value = serde_json::from_slice(config.raw())
        .map_err(|e| Error::json(format!("the config {}", config.id()), e))?;
    Ok(match v.get("history") {
        Some(Value::Array(h)) => h.clone(),
        _ => Vec::new(),
    })
}

impl RebasedSource {
    /// Rebases `image` from `old_base` onto `new_base` (named `new_name` in the
    /// annotations).
    pub fn new(
        image: Opened,
        old_base: &SourceImage,
        new_base: Opened,
        new_name: &str,
    ) -> Result<RebasedSource, Error> {
        let (mine, old) = (image.image.config.diff_ids(), old_base.config.diff_ids());
        if old.len() > mine.len() || mine[..old.len()] != *old {
            return Err(Error::invalid(
                format!("image {}", image.image.summary.id),
                format!(
                    "the old base {}'s {} layers are not its bottom layers",
                    old_base.summary.id,
                    old.len()
                ),
            ));
        }
        let new = &new_base.image;
        if new.config.os() != image.image.config.os()
            || new.config.architecture() != image.image.config.architecture()
        {
            return Err(Error::invalid(
                format!("the new base {}", new.summary.id),
                format!(
                    "is {}/{}, the image {}/{}",
                    new.config.os(),
                    new.config.architecture(),
                    image.image.config.os(),
                    image.image.config.architecture()
                ),
            ));
        }
        // The config: the image's, with the new base's layers and history below its own.
        let what = format!("the config {}", image.image.config.id());
        let mut doc: Value =
            serde_json::from_slice(image.image.config.raw()).map_err(|e| Error::json(&what, e))?;
        let diff_ids: Vec<String> = new
            .config
            .diff_ids()
            .iter()
            .chain(&mine[old.len()..])
            .map(|d| d.to_string())
            .collect();
        let old_history = history(&old_base.config)?.len();
        let own = history(&image.image.config)?;
        let mut hist = history(&new.config)?;
        hist.extend(own.into_iter().skip(old_history));
        let obj = doc
            .as_object_mut()
            .ok_or_else(|| Error::invalid(&what, "is not a JSON object"))?;
        obj.insert(
            "rootfs".into(),
            serde_json::json!({"type": "layers", "diff_ids": diff_ids}),
        );
        obj.insert("history".into(), Value::Array(hist));
        let config = ImageConfig::parse(gojson::marshal(&doc)?, "made by the rebase")?;

        let chains = chain_ids(config.diff_ids());
        let relabel = |l: &LayerInfo, index: usize| {
            let mut l = l.clone();
            l.index = index;
            l.chain_id = chains[index];
            l.blob = oci(&l.blob);
            l.foreign = l.foreign.as_ref().map(oci);
            l
        };
        let mut layers: Vec<LayerInfo> = new
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| relabel(l, i))
            .collect();
        let below = layers.len();
        for (n, l) in image.image.layers[old.len()..].iter().enumerate() {
            layers.push(relabel(l, below + n));
        }
        let new_digest = new.manifest_or_schema2()?.digest;
        let mut annotations = match &image.image.manifest {
            Some(m) => Manifest::parse(&m.bytes, &m.media_type, "the image manifest")?.annotations,
            None => Default::default(),
        };
        annotations.insert(BASE_NAME.into(), new_name.to_string());
        annotations.insert(BASE_DIGEST.into(), new_digest.to_string());
        let manifest = super::oci_manifest(&config, &layers, annotations)?;
        let result = super::edited_image(config, Some(manifest), layers);
        Ok(RebasedSource {
            image_src: image,
            new_base,
            old_count: old.len(),
            result,
        })
    }

    /// The rebased image (new base layers, then the image's own).
    pub fn image(&self) -> &SourceImage {
        &self.result
    }
}

fn oci(d: &Descriptor) -> Descriptor {
    let mut d = d.clone();
    if let Some(t) = LayerType::of(&d.media_type) {
        d.media_type = t.oci_media_type().into();
    }
    d
}

impl ImageSource for RebasedSource {
    fn describe(&self) -> String {
        format!("{} (rebased)", self.image_src.source.describe())
    }

    fn list(&mut self) -> Result<Vec<ImageSummary>, Error> {
        Ok(vec![self.result.summary.clone()])
    }

    fn open_image(&mut self, image: &ImageSummary) -> Result<SourceImage, Error> {
        if image.id != self.result.summary.id {
            return Err(Error::invalid(
                self.describe(),
                format!("has no image {}", image.id),
            ));
        }
        Ok(self.result.clone())
    }

    fn layer(&self, _image: &SourceImage, index: usize) -> Result<LayerStream<'_>, Error> {
        let info = self.result.layers.get(index).cloned().ok_or_else(|| {
            Error::invalid(self.describe(), format!("the image has no layer {index}"))
        })?;
        let below = self.new_base.image.layers.len();
        let stream = if index < below {
            self.new_base.source.layer(&self.new_base.image, index)?
        } else {
            let i = self.old_count + index - below;
            self.image_src.source.layer(&self.image_src.image, i)?
        };
        stream.relabel(info)
    }
}
