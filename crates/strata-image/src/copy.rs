//! [`copy`]: moves images from any [`ImageSource`] to any [`ImageDestination`].
//!
//! For each selected image: the destination gets the config, then each layer, unless it
//! says it already has it (then the source layer is not even opened), then the image's
//! record; one commit at the end makes them all visible. Layers stream through with
//! their digests verified on the way ([`crate::LayerStream`]); progress is reported per
//! layer, in bytes of the blob as the source stores it.

use std::io::{self, Read};

use crate::ids::ImageId;
use crate::manifest::Descriptor;
use crate::reference::Reference;
use crate::stream::LayerInfo;
use crate::transport::{
    select, ImageDestination, ImageRecord, ImageSelector, ImageSource, SourceImage,
};
use crate::Error;

/// Receives progress while a copy runs; every method has an empty default. Calls come
/// from the copying thread and, for bytes, from whatever thread reads the layer.
pub trait Progress: Sync {
    /// Image `position` (0-based) of `count` is about to be copied.
    fn image(&self, _position: usize, _count: usize, _image: &SourceImage) {}
    /// A layer is about to be copied (or reused); `layer.blob.size` is its total.
    fn layer_start(&self, _layer: &LayerInfo) {}
    /// `bytes` more bytes of the layer's blob were read.
    fn layer_bytes(&self, _layer: &LayerInfo, _bytes: u64) {}
    /// The layer is in the destination; `reused` when it was there already.
    fn layer_done(&self, _layer: &LayerInfo, _reused: bool) {}
}

/// What to copy, and who hears about it.
pub struct CopyOptions<'a> {
    pub images: ImageSelector,
    pub progress: Option<&'a dyn Progress>,
}

impl<'a> CopyOptions<'a> {
    pub fn new(images: ImageSelector) -> CopyOptions<'a> {
        CopyOptions {
            images,
            progress: None,
        }
    }

    pub fn with_progress(mut self, progress: &'a dyn Progress) -> CopyOptions<'a> {
        self.progress = Some(progress);
        self
    }
}

/// One layer as copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopiedLayer {
    pub source: LayerInfo,
    /// The blob as the destination stored it.
    pub stored: Descriptor,
    /// The destination had it already; the source layer was not read.
    pub reused: bool,
}

/// One image as copied.
#[derive(Clone, Debug)]
pub struct CopiedImage {
    pub id: ImageId,
    pub names: Vec<Reference>,
    pub layers: Vec<CopiedLayer>,
}

/// What a copy did.
#[derive(Clone, Debug, Default)]
pub struct CopyReport {
    pub images: Vec<CopiedImage>,
}

/// Counts blob bytes for [`Progress::layer_bytes`].
struct Counted<'a> {
    inner: Box<dyn Read + Send + 'a>,
    progress: &'a dyn Progress,
    layer: LayerInfo,
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.progress.layer_bytes(&self.layer, n as u64);
        }
        Ok(n)
    }
}

/// Copies the images `options.images` selects from `source` to `destination`, then
/// commits the destination. On error nothing is committed.
pub fn copy(
    source: &mut dyn ImageSource,
    destination: &mut dyn ImageDestination,
    options: &CopyOptions<'_>,
) -> Result<CopyReport, Error> {
    let chosen = select(&source.describe(), source.list()?, &options.images)?;
    let mut report = CopyReport::default();
    for (position, summary) in chosen.iter().enumerate() {
        let image = source.open_image(summary)?;
        if let Some(p) = options.progress {
            p.image(position, chosen.len(), &image);
        }
        destination.begin_image(&image.config)?;
        let mut stored = Vec::with_capacity(image.layers.len());
        let mut copied = Vec::with_capacity(image.layers.len());
        for layer in &image.layers {
            if let Some(p) = options.progress {
                p.layer_start(layer);
            }
            let (s, reused) = match destination.reuse_layer(layer)? {
                Some(s) => (s, true),
                None => {
                    let mut stream = source.layer(&image, layer.index)?;
                    if let Some(progress) = options.progress {
                        let layer = layer.clone();
                        stream = stream.map_blob(move |inner| {
                            Box::new(Counted {
                                inner,
                                progress,
                                layer,
                            })
                        });
                    }
                    (destination.put_layer(stream)?, false)
                }
            };
            if let Some(p) = options.progress {
                p.layer_done(layer, reused);
            }
            copied.push(CopiedLayer {
                source: layer.clone(),
                stored: s.blob.clone(),
                reused,
            });
            stored.push(s);
        }
        destination.end_image(ImageRecord {
            config: &image.config,
            layers: &stored,
            source_layers: &image.layers,
            names: &image.summary.names,
            parent: image.parent,
            source_manifest: image.manifest.as_ref(),
        })?;
        report.images.push(CopiedImage {
            id: image.config.id(),
            names: image.summary.names.clone(),
            layers: copied,
        });
    }
    destination.commit()?;
    Ok(report)
}
