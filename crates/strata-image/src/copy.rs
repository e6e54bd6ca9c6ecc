//! [`copy`]: moves images from any [`ImageSource`] to any [`ImageDestination`].
//!
//! For each selected image: the destination gets the config, then each layer, unless it
//! says it already has it (then the source layer is not even opened), then the image's
//! record; one commit at the end makes them all visible. Layers stream through with
//! their digests verified on the way ([`crate::LayerStream`]: always the blob's digest
//! and size; the diffID whenever the destination reads the tar, and for compressed blobs
//! passed through as they are only with [`CopyOptions::verify_diff_ids`]); progress is
//! reported per layer, in bytes of the blob as the source stores it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::ids::ImageId;
use crate::manifest::Descriptor;
use crate::reference::Reference;
use crate::stream::LayerInfo;
use crate::transport::{
    select, ImageDestination, ImageRecord, ImageSelector, ImageSource, Skipped, SourceImage,
    StoredLayer,
};
use crate::Error;

/// Receives progress while a copy runs; every method has an empty default. Layer calls
/// come from the threads copying layers (several at once when the destination takes
/// them so), bytes from whatever thread reads the layer.
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
    /// Which images of the source to copy.
    pub images: ImageSelector,
    /// Who hears how the copy goes (progress bars, events); none by default.
    pub progress: Option<&'a dyn Progress>,
    /// Layers copied at once, at most (and never more than the destination takes,
    /// [`ImageDestination::layer_jobs`]). Default: one per available core.
    pub jobs: usize,
    /// Also check the diffID of compressed blobs a destination keeps as they are (a
    /// registry, a layout), which means decompressing each one on the side; off by
    /// default, as the blob digest already proves the bytes are the manifest's.
    pub verify_diff_ids: bool,
}

impl<'a> CopyOptions<'a> {
    /// Copies the `images` chosen, `jobs` one per core, no progress, diffIDs of kept blobs unchecked.
    pub fn new(images: ImageSelector) -> CopyOptions<'a> {
        CopyOptions {
            images,
            progress: None,
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            verify_diff_ids: false,
        }
    }

    /// Reports progress to `progress`.
    pub fn with_progress(mut self, progress: &'a dyn Progress) -> CopyOptions<'a> {
        self.progress = Some(progress);
        self
    }
}

/// One layer as copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopiedLayer {
    /// The layer as the source described it.
    pub source: LayerInfo,
    /// The blob as the destination stored it.
    pub stored: Descriptor,
    /// The destination had it already; the source layer was not read.
    pub reused: bool,
}

/// One image as copied.
#[derive(Clone, Debug)]
pub struct CopiedImage {
    /// The image's ID (sha256 of its config, which every copy keeps byte for byte).
    pub id: ImageId,
    /// The names the destination gave it.
    pub names: Vec<Reference>,
    /// Its layers, bottom first.
    pub layers: Vec<CopiedLayer>,
}

/// What a copy did.
#[derive(Clone, Debug, Default)]
pub struct CopyReport {
    /// Every image copied, in the order copied.
    pub images: Vec<CopiedImage>,
    /// With [`ImageSelector::All`]: the source's entries that are not images, and why.
    pub skipped: Vec<Skipped>,
    /// What the source accepted with a warning ([`ImageSource::warnings`]).
    pub warnings: Vec<String>,
}

/// Copies the images `options.images` selects from `source` to `destination`, then
/// commits the destination. On error nothing is committed.
pub fn copy(
    source: &mut dyn ImageSource,
    destination: &mut dyn ImageDestination,
    options: &CopyOptions<'_>,
) -> Result<CopyReport, Error> {
    let listed = source.list()?;
    let skipped = source.skipped()?;
    let chosen = select(&source.describe(), listed, &skipped, &options.images)?;
    let mut report = CopyReport {
        skipped: if options.images == ImageSelector::All {
            skipped
        } else {
            Vec::new()
        },
        ..CopyReport::default()
    };
    for (position, summary) in chosen.iter().enumerate() {
        let image = source.open_image(summary)?;
        if let Some(p) = options.progress {
            p.image(position, chosen.len(), &image);
        }
        destination.begin_image(&image.config)?;
        let copied = copy_layers(&*source, &*destination, &image, options)?;
        let stored: Vec<StoredLayer> = copied.iter().map(|(s, _)| s.clone()).collect();
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
            layers: image
                .layers
                .iter()
                .zip(copied)
                .map(|(l, (s, reused))| CopiedLayer {
                    source: l.clone(),
                    stored: s.blob,
                    reused,
                })
                .collect(),
        });
    }
    destination.commit()?;
    report.warnings = source.warnings();
    Ok(report)
}

/// A layer as stored, and whether it was there already.
type LayerOutcome = (StoredLayer, bool);

/// Copies (or reuses) every layer of `image`, on as many threads as the destination and
/// the options allow (largest first where the destination takes them in any order); the
/// results are in layer order. The first error (in layer order) wins, and stops the
/// threads from starting more layers.
fn copy_layers(
    source: &dyn ImageSource,
    destination: &dyn ImageDestination,
    image: &SourceImage,
    options: &CopyOptions<'_>,
) -> Result<Vec<LayerOutcome>, Error> {
    let one = |layer: &LayerInfo| -> Result<LayerOutcome, Error> {
        if let Some(p) = options.progress {
            p.layer_start(layer);
        }
        let result = match destination.reuse_layer(layer)? {
            Some(s) => (s, true),
            None => {
                let mut stream = source
                    .layer(image, layer.index)?
                    .check_diff_id(options.verify_diff_ids);
                if let Some(progress) = options.progress {
                    let layer = layer.clone();
                    stream = stream.on_bytes(move |n| progress.layer_bytes(&layer, n));
                }
                (destination.put_layer(stream)?, false)
            }
        };
        if let Some(p) = options.progress {
            p.layer_done(layer, result.1);
        }
        Ok(result)
    };
    let jobs = destination
        .layer_jobs()
        .min(options.jobs)
        .min(image.layers.len())
        .max(1);
    if jobs == 1 {
        return image.layers.iter().map(one).collect();
    }
    // Largest first where the destination does not care about the order: the longest
    // transfer starts at once instead of after the others.
    let mut order: Vec<usize> = (0..image.layers.len()).collect();
    if destination.any_order() {
        order.sort_by_key(|&i| std::cmp::Reverse(image.layers[i].blob.size));
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Vec<Mutex<Option<Result<LayerOutcome, Error>>>> =
        image.layers.iter().map(|_| Mutex::new(None)).collect();
    let workers = destination
        .layers_in_hand(jobs)
        .clamp(jobs, image.layers.len());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= order.len() || failed.load(Ordering::Relaxed) {
                    return;
                }
                let i = order[n];
                let r = one(&image.layers[i]);
                if r.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                *results[i].lock().unwrap_or_else(PoisonError::into_inner) = Some(r);
            });
        }
    });
    let results: Vec<Option<Result<LayerOutcome, Error>>> = results
        .into_iter()
        .map(|r| r.into_inner().unwrap_or_else(PoisonError::into_inner))
        .collect();
    // The first error in layer order, whichever order the layers ran in.
    let mut out = Vec::with_capacity(results.len());
    let mut skipped = None;
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Some(r) => out.push(r?),
            None => skipped = skipped.or(Some(i)),
        }
    }
    match skipped {
        Some(i) => Err(Error::invalid(
            format!("layer {i} of image {}", image.summary.id),
            "was not copied (another layer failed first)",
        )),
        None => Ok(out),
    }
}
