//! The Strata store as a transport: `strata:IMAGE`.
//!
//! * As a **destination** (`load`, `pull`, `copy … strata:`), each layer becomes the
//!   store layer named by its chain ID (hex), so equal stacks are stored once: a layer
//!   the store already has (by chain ID) is reused without reading the source. Layers
//!   are imported in one pass (unpacked, their diffID and blob digest computed and
//!   checked on the way, compressed blobs kept as they came for a later push or save).
//!   Up to `jobs` layers are applied at once: a layer whose parent is not in yet is
//!   written meanwhile ([`Store::import_after`]: on an overlay store it waits only where
//!   it must see the parent's content) and made visible after its parent; a download
//!   among them is spooled to the store's staging area first, so that it never stalls.
//!   `commit` records every image (config blob, manifest blob when the layers kept are
//!   the manifest's, names) in one transaction.
//! * As a **source** (`save`, `push`, `copy strata:…`), each layer is its original tar,
//!   rebuilt bit-exact from the store (its size and digest known before it is read), or
//!   a compressed blob the store kept, when the caller prefers that compression and one
//!   is there (then the kept manifest too). [`StoreSource::keep_compressed`] (what
//!   `strata push` uses) makes the missing ones once and keeps them. A kept blob's
//!   stream says where else it is: its file, and the registry repositories it was
//!   pulled from or pushed to ([`remember_push`]), which a registry destination asks to
//!   mount it from.
//!
//! An image is named by a name (`busybox`, normalized), its ID (`sha256:…`) or a unique
//! prefix of the ID's hex.

use std::io::{self, Read};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use strata_layer::compress::{Compression, Compressor};
use strata_layer::mapped::MappedFile;
use strata_layer::unpack::Input;
use strata_registry::{RegistryHost, RepositoryName};
use strata_store::{
    ApplyOptions, BlobLease, Expected, Image, ImportOptions, LayerId, LayerStatus, ManifestRef,
    NewImage, Os, ParentWait, Store,
};

use crate::config::ImageConfig;
use crate::ids::{ChainId, Digest, ImageId};
use crate::manifest::{media_type, Descriptor, LayerType, Manifest};
use crate::reference::Reference;
use crate::stream::{BlobOrigin, LayerInfo, LayerStream};
use crate::transport::{
    ImageDestination, ImageRecord, ImageSource, ImageSummary, RawManifest, SourceImage, StoredLayer,
};
use crate::Error;

/// The store layer holding the stack `chain`.
pub fn layer_id(chain: &ChainId) -> LayerId {
    // 64 lowercase hex digits are always a valid layer ID.
    LayerId::new(chain.hex()).unwrap_or_else(|_| unreachable!("hex is a valid layer ID"))
}

/// The image `spec` names: a name, a full ID, or a unique prefix of an ID's hex.
pub fn resolve(store: &Store, spec: &str) -> Result<Image, Error> {
    let hex = spec.strip_prefix("sha256:").unwrap_or(spec);
    if hex.len() == 64 {
        if let Ok(d) = Digest::parse(&format!("sha256:{hex}")) {
            if let Some(image) = store.image(&d)? {
                return Ok(image);
            }
        }
    }
    if let Ok(reference) = Reference::parse(spec) {
        if let Some(image) = store.image_named(&reference.to_string())? {
            return Ok(image);
        }
    }
    if hex.len() >= 3 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        let found = store.images_with_prefix(hex)?;
        match found.len() {
            1 => return Ok(found.into_iter().next().unwrap_or_else(|| unreachable!())),
            0 => {}
            n => {
                return Err(Error::Selection {
                    source_name: "the store".into(),
                    reason: format!("`{spec}` is the start of {n} image IDs; give more of it"),
                })
            }
        }
    }
    Err(Error::Selection {
        source_name: "the store".into(),
        reason: format!("no image `{spec}` in the store"),
    })
}

/// The images `save` writes for `specs`, in the order they first appear, each with the
/// names it is saved under, chosen as Docker 20.10's `docker save` chooses them:
///
/// - `NAME:TAG`: that image, with that name only;
/// - `NAME` (a repository, no tag): every image with a name in it, with its tags
///   (sorted); if none, `NAME` is taken as the start of an image ID;
/// - an image ID (whole or a prefix), or `NAME@DIGEST`: that image, with no name (an
///   archive entry without `RepoTags`).
///
/// An image named by several arguments is listed once, with every name they gave it.
pub fn save_selection(
    store: &Store,
    specs: &[String],
) -> Result<Vec<(Image, Vec<Reference>)>, Error> {
    let mut out: Vec<(Image, Vec<Reference>)> = Vec::new();
    let mut add = |image: Image, name: Option<Reference>| {
        let at = match out.iter().position(|(i, _)| i.id == image.id) {
            Some(at) => at,
            None => {
                out.push((image, Vec::new()));
                out.len() - 1
            }
        };
        let names = &mut out[at].1;
        if let Some(n) = name.filter(|n| n.tag().is_some() && n.digest().is_none()) {
            if !names.contains(&n) {
                names.push(n);
            }
        }
    };
    for spec in specs {
        let hex = spec.strip_prefix("sha256:").unwrap_or(spec);
        let whole_id = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
        let name = match Reference::parse_name(spec) {
            // `sha256:<prefix>` reads as the name `sha256`: Docker takes it as an ID.
            Ok(n) if !whole_id && n.familiar_name() != "sha256" => n,
            _ => {
                add(resolve(store, spec)?, None);
                continue;
            }
        };
        if name.tag().is_none() && name.digest().is_none() {
            let mut named: Vec<(String, Reference, Image)> = Vec::new();
            for image in store.images()? {
                for n in image.names.iter().filter_map(|n| Reference::parse(n).ok()) {
                    // A digest name brings its image in without a name, as in Docker.
                    if n.name() == name.name() {
                        named.push((n.to_string(), n, image.clone()));
                    }
                }
            }
            if named.is_empty() {
                add(resolve(store, spec)?, None);
            }
            named.sort_by(|a, b| a.0.cmp(&b.0));
            for (_, n, image) in named {
                add(image, Some(n));
            }
            continue;
        }
        let image = store
            .image_named(&name.to_string())?
            .ok_or_else(|| Error::Selection {
                source_name: "the store".into(),
                reason: format!("no image `{spec}` in the store"),
            })?;
        add(image, Some(name));
    }
    Ok(out)
}

fn summary(index: usize, image: &Image, names: &[Reference]) -> ImageSummary {
    ImageSummary {
        index,
        id: ImageId(image.id),
        names: names.to_vec(),
        ref_names: names.iter().map(Reference::to_string).collect(),
    }
}

/// Images of the store, read as a source.
pub struct StoreSource {
    store: Arc<Store>,
    /// Each image, with the names it is offered under.
    images: Vec<(Image, Vec<Reference>)>,
    prefer: Compression,
    keep_compressed: bool,
}

impl StoreSource {
    /// The images `specs` name, in that order (every image if `specs` is empty). Layers
    /// come as their original tars, or as kept blobs of compression `prefer`.
    pub fn new(
        store: Arc<Store>,
        specs: &[String],
        prefer: Compression,
    ) -> Result<StoreSource, Error> {
        let images = if specs.is_empty() {
            store.images()?
        } else {
            specs
                .iter()
                .map(|s| resolve(&store, s))
                .collect::<Result<Vec<_>, _>>()?
        };
        let images = images
            .into_iter()
            .map(|i| {
                let names = i
                    .names
                    .iter()
                    .filter_map(|n| Reference::parse(n).ok())
                    .collect();
                (i, names)
            })
            .collect();
        Ok(StoreSource::named(store, images, prefer))
    }

    /// These images, offered under these names only (what [`save_selection`] picks).
    pub fn named(
        store: Arc<Store>,
        images: Vec<(Image, Vec<Reference>)>,
        prefer: Compression,
    ) -> StoreSource {
        StoreSource {
            store,
            images,
            prefer,
            keep_compressed: false,
        }
    }

    /// Makes the blobs of compression `prefer` that the store lacks when an image is
    /// opened (layers in parallel) and keeps them, so every layer is offered compressed
    /// and the next push of it compresses nothing (and sends nothing, when the registry
    /// has it). What `strata push` does.
    pub fn keep_compressed(mut self) -> StoreSource {
        self.keep_compressed = self.prefer != Compression::None;
        self
    }

    /// The kept blob of layer `id` in compression `prefer`, if there is one.
    fn kept(&self, id: &LayerId) -> Result<Option<Descriptor>, Error> {
        if self.prefer == Compression::None {
            return Ok(None);
        }
        Ok(self
            .store
            .layer_blobs(id)?
            .into_iter()
            .find(|(_, mt, _)| LayerType::of(mt).is_some_and(|t| t.compression == self.prefer))
            .map(|(digest, mt, size)| Descriptor::new(&mt, digest, size)))
    }

    /// Compresses the layers `ids` into kept blobs, on as many threads as there are
    /// cores.
    fn compress(&self, ids: &[LayerId]) -> Result<(), Error> {
        let media_type = LayerType {
            compression: self.prefer,
            foreign: false,
        }
        .oci_media_type();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let next = std::sync::atomic::AtomicUsize::new(0);
        // Holds each blob from its placing until its layer refers to it.
        let lease = self.store.blob_lease()?;
        let one = |id: &LayerId| -> Result<(), Error> {
            // The tar as the store rebuilds it (verified against its diffID), compressed
            // on every core as the other destinations compress.
            let mut c = Compressor::parallel(self.store.blob_writer(&lease)?, self.prefer)
                .map_err(|e| Error::io("starting compression", e))?;
            self.store.diff(id, &mut c, Compression::None)?;
            let blob = c
                .finish()
                .map_err(|e| Error::io(format!("compressing store layer {id}"), e))?;
            let (digest, _) = blob.commit(None)?;
            self.store.add_layer_blob(id, &digest, media_type)?;
            Ok(())
        };
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads.min(ids.len()))
                .map(|_| {
                    scope.spawn(|| loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(id) = ids.get(i) else { return Ok(()) };
                        if let Err(e) = one(id) {
                            // Stop the others at their next layer.
                            next.store(ids.len(), std::sync::atomic::Ordering::Relaxed);
                            return Err(Error::invalid(
                                format!("store layer {id}"),
                                format!("cannot be compressed: {e}"),
                            ));
                        }
                    })
                })
                .collect();
            // The first error wins; the scope still waits for every thread.
            workers.into_iter().try_for_each(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(Error::invalid("a compressing thread", "panicked")))
            })
        })
    }
}

/// The original tar of a store layer, rebuilt on a thread of its own into a pipe.
struct Rebuilt {
    pipe: io::PipeReader,
    thread: Option<std::thread::JoinHandle<Result<(), strata_store::Error>>>,
}

impl Read for Rebuilt {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.pipe.read(buf)?;
        if n == 0 && !buf.is_empty() {
            if let Some(t) = self.thread.take() {
                match t.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(io::Error::other(e)),
                    Err(_) => {
                        return Err(io::Error::other("the layer's rebuilding thread panicked"))
                    }
                }
            }
        }
        Ok(n)
    }
}

impl ImageSource for StoreSource {
    fn describe(&self) -> String {
        format!("strata:{}", self.store.root().display())
    }

    fn list(&mut self) -> Result<Vec<ImageSummary>, Error> {
        Ok(self
            .images
            .iter()
            .enumerate()
            .map(|(i, (image, names))| summary(i, image, names))
            .collect())
    }

    fn open_image(&mut self, image: &ImageSummary) -> Result<SourceImage, Error> {
        let record = self
            .store
            .image(&image.id.0)?
            .ok_or_else(|| Error::invalid(format!("image {}", image.id), "is not in the store"))?;
        let config = ImageConfig::parse(self.store.read_blob(&record.id)?, "in the store")?;
        let chains = config.chain_ids();
        let ids: Vec<LayerId> = chains.iter().map(layer_id).collect();
        if self.keep_compressed {
            let mut missing = Vec::new();
            for id in &ids {
                if self.kept(id)?.is_none() && !missing.contains(id) {
                    missing.push(id.clone());
                }
            }
            self.compress(&missing)?;
        }
        let mut layers = Vec::with_capacity(chains.len());
        for (index, ((diff_id, chain), id)) in
            config.diff_ids().iter().zip(&chains).zip(&ids).enumerate()
        {
            let layer = self.store.layer(id)?;
            let diff = layer
                .diff
                .filter(|d| d.diff_id == diff_id.0 && layer.status == LayerStatus::Applied)
                .ok_or_else(|| {
                    Error::invalid(
                        format!("layer {index} of image {}", image.id),
                        format!("store layer {id} does not hold diffID {diff_id}"),
                    )
                })?;
            let blob = match self.kept(id)? {
                Some(kept) => kept,
                None => Descriptor::new(media_type::OCI_LAYER, diff_id.0, diff.tar_size),
            };
            layers.push(LayerInfo {
                index,
                blob,
                diff_id: *diff_id,
                chain_id: *chain,
                foreign: None,
            });
        }
        // The kept manifest still describes the image when the layers offered are its.
        let manifest = match &record.manifest {
            Some(m) => {
                let bytes = self.store.read_blob(&m.digest)?;
                let parsed = Manifest::parse(&bytes, &m.media_type, "the kept manifest")?;
                let same = parsed.config.digest == record.id
                    && parsed.layers.len() == layers.len()
                    && parsed
                        .layers
                        .iter()
                        .zip(&layers)
                        .all(|(a, b)| a.digest == b.blob.digest);
                same.then(|| RawManifest {
                    media_type: m.media_type.clone(),
                    digest: m.digest,
                    bytes,
                })
            }
            None => None,
        };
        Ok(SourceImage {
            summary: image.clone(),
            config,
            manifest,
            layers,
            parent: record.parent.map(ImageId),
        })
    }

    fn layer(&self, image: &SourceImage, index: usize) -> Result<LayerStream<'_>, Error> {
        let info = image
            .layers
            .get(index)
            .ok_or_else(|| {
                Error::invalid(
                    format!("image {}", image.summary.id),
                    format!("has no layer {index}"),
                )
            })?
            .clone();
        let id = layer_id(&info.chain_id);
        if info.blob.digest != info.diff_id.0 {
            let path = self.store.blob_path(&info.blob.digest).ok_or_else(|| {
                Error::invalid(
                    format!("layer {id}"),
                    format!("its blob {} is gone", info.blob.digest),
                )
            })?;
            let file = std::fs::File::open(&path)
                .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
            let mut stream = LayerStream::new(info.clone(), image.summary.id, file)
                .with_origin(BlobOrigin::File(path));
            for (registry, repository) in self.store.blob_locations(&info.blob.digest)? {
                // A location the registry crate no longer accepts is only a lost hint.
                if let (Ok(host), Ok(repository)) = (
                    RegistryHost::parse(&registry),
                    RepositoryName::parse(&repository),
                ) {
                    stream = stream.with_origin(BlobOrigin::Registry { host, repository });
                }
            }
            return Ok(stream);
        }
        let (pipe, mut writer) =
            io::pipe().map_err(|e| Error::io("cannot make a pipe for a layer", e))?;
        // A 1 MiB pipe: the rebuild writes in 1 MiB pieces, and a 64 KiB pipe would make
        // both threads wake sixteen times as often.
        let _ = rustix::pipe::fcntl_setpipe_size(&writer, 1 << 20);
        let store = self.store.clone();
        let thread =
            std::thread::spawn(move || store.diff(&id, &mut writer, Compression::None).map(drop));
        Ok(LayerStream::new(
            info,
            image.summary.id,
            Rebuilt {
                pipe,
                thread: Some(thread),
            },
        ))
    }
}

/// The state of the image being received.
struct Current {
    config: ImageConfig,
    chains: Vec<ChainId>,
    /// Per layer: `None` not yet in, `Some(Ok)` in the store, `Some(Err)` failed.
    done: Mutex<Vec<Option<Result<(), String>>>>,
    changed: Condvar,
}

impl Current {
    fn finish(&self, index: usize, result: Result<(), String>) {
        let mut done = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        done[index] = Some(result);
        self.changed.notify_all();
    }

    /// Whether layer `index` is in (without waiting).
    fn is_in(&self, index: usize) -> bool {
        matches!(
            self.done.lock().unwrap_or_else(PoisonError::into_inner)[index],
            Some(Ok(()))
        )
    }

    /// Waits until layer `index` is in. An error as soon as any layer of the image failed:
    /// the copy then stops starting layers, so the one awaited may never come.
    fn wait_for(&self, index: usize) -> Result<(), Error> {
        let mut done = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some((i, Some(Err(e)))) = done
                .iter()
                .enumerate()
                .find(|(_, d)| matches!(d, Some(Err(_))))
            {
                return Err(Error::invalid(format!("layer {i}"), format!("failed: {e}")));
            }
            if let Some(Ok(())) = &done[index] {
                return Ok(());
            }
            done = self
                .changed
                .wait(done)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// The layers a destination may run at once: taken by each layer it applies, given
/// back while the layer waits for its parent. A free slot goes to the layer that waits
/// for it first in this order: layers taking their slot back after their parent came
/// (their children wait for them, and they hold a staged directory and an open stream
/// meanwhile), then layers not yet started, each kind lowest index first (the order in
/// which they are committed).
struct Slots {
    state: Mutex<SlotState>,
    changed: Condvar,
}

struct SlotState {
    free: usize,
    /// Who waits for a slot, first in line first.
    waiting: std::collections::BTreeSet<Turn>,
}

/// A layer waiting for a slot; ordered as served: every layer taking its slot back
/// before any layer starting, and within each, the lowest layer index first.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Turn {
    /// Takes back the slot it gave up while waiting for its parent.
    Resuming(usize),
    /// Starts.
    Starting(usize),
}

impl Slots {
    fn new(n: usize) -> Slots {
        Slots {
            state: Mutex::new(SlotState {
                free: n,
                waiting: std::collections::BTreeSet::new(),
            }),
            changed: Condvar::new(),
        }
    }

    /// Waits until a slot is free and `who` comes first of those waiting, takes it.
    fn take(&self, who: Turn) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.waiting.insert(who);
        while state.free == 0 || state.waiting.first() != Some(&who) {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.waiting.remove(&who);
        state.free -= 1;
        // The next in line may have a slot too.
        self.changed.notify_all();
    }

    /// A slot for layer `index` to start on, held until the guard drops.
    fn hold(&self, index: usize) -> SlotHeld<'_> {
        self.take(Turn::Starting(index));
        SlotHeld {
            slots: self,
            index,
            held: Mutex::new(true),
        }
    }

    fn give(&self) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .free += 1;
        self.changed.notify_all();
    }
}

/// A layer's slot; given back when dropped, unless given up meanwhile.
struct SlotHeld<'a> {
    slots: &'a Slots,
    /// The layer holding it.
    index: usize,
    held: Mutex<bool>,
}

impl SlotHeld<'_> {
    /// Gives the slot to another layer (while this one waits).
    fn give_up(&self) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if std::mem::take(&mut *held) {
            self.slots.give();
        }
    }

    /// Takes a slot again after [`give_up`](Self::give_up), before any layer not yet
    /// started.
    fn take_back(&self) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if !*held {
            self.slots.take(Turn::Resuming(self.index));
            *held = true;
        }
    }
}

impl Drop for SlotHeld<'_> {
    fn drop(&mut self) {
        self.give_up();
    }
}

/// The store, receiving images.
pub struct StoreDestination {
    store: Arc<Store>,
    /// The name given on the command line (`strata:NAME`), instead of the source's.
    name: Option<Reference>,
    apply: ApplyOptions,
    jobs: usize,
    /// `jobs` slots: a layer waiting for its parent runs nothing and holds none.
    slots: Slots,
    current: Option<Current>,
    pending: Vec<NewImage>,
    /// Layers and blobs this destination brought in, taken out again unless it commits:
    /// a failed load leaves the store as it was.
    brought: Mutex<Vec<LayerId>>,
    blobs: Vec<Digest>,
    /// Holds `blobs` until the images referring to them are recorded.
    lease: Option<BlobLease>,
    committed: bool,
}

impl Drop for StoreDestination {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        let layers =
            std::mem::take(&mut *self.brought.lock().unwrap_or_else(PoisonError::into_inner));
        // Newest first; a layer something else uses by now (a child, an image) stays.
        for id in layers.iter().rev() {
            let _ = self.store.remove(id);
        }
        drop(self.lease.take());
        for digest in &self.blobs {
            let _ = self.store.discard_blob(digest);
        }
    }
}

impl StoreDestination {
    /// Receives into `store`; `name`, if given, names the (single) image received.
    pub fn new(
        store: Arc<Store>,
        name: Option<Reference>,
        apply: ApplyOptions,
        jobs: usize,
    ) -> StoreDestination {
        StoreDestination {
            store,
            name,
            apply,
            jobs: jobs.max(1),
            slots: Slots::new(jobs.max(1)),
            current: None,
            pending: Vec::new(),
            brought: Mutex::new(Vec::new()),
            blobs: Vec::new(),
            lease: None,
            committed: false,
        }
    }

    /// Stores `bytes` as a blob, held until the commit.
    fn put_blob(&mut self, bytes: &[u8]) -> Result<Digest, Error> {
        let lease = match self.lease.take() {
            Some(l) => l,
            None => self.store.blob_lease()?,
        };
        let digest = self.store.put_blob(bytes, &lease);
        self.lease = Some(lease);
        let digest = digest?;
        self.blobs.push(digest);
        Ok(digest)
    }

    /// The size of the blob `digest` the store keeps, if it keeps it.
    fn kept_size(&self, digest: &Digest) -> Option<u64> {
        let path = self.store.blob_path(digest)?;
        std::fs::metadata(path).ok().map(|m| m.len())
    }

    fn current(&self) -> Result<&Current, Error> {
        self.current
            .as_ref()
            .ok_or_else(|| Error::invalid("the store destination", "got a layer before a config"))
    }

    fn stored(&self, info: &LayerInfo) -> Result<Option<StoredLayer>, Error> {
        match self.store.layer(&layer_id(&info.chain_id)) {
            Ok(l) => stand_in(&l, info).map(Some),
            Err(strata_store::Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Brings layer `info` in from `blob`, or through maps from `mapped` when there is
    /// one (the stream is then read only if the store asks to try again).
    fn import<'a>(
        &self,
        current: &Current,
        info: &LayerInfo,
        blob: Box<dyn Read + Send + 'a>,
        mut mapped: Option<MappedFile<'a>>,
        slot: &SlotHeld<'_>,
    ) -> Result<StoredLayer, Error> {
        let id = layer_id(&info.chain_id);
        let parent = info
            .index
            .checked_sub(1)
            .map(|i| layer_id(&current.chains[i]));
        let compression = info.compression();
        let mut apply = self.apply.clone();
        if current.config.layer_os() == Os::Windows {
            apply.os = Os::Windows;
        }
        let options = ImportOptions {
            apply,
            keep_blob: (compression != Compression::None).then(|| info.blob.media_type.clone()),
            diff_id: Some(info.diff_id.0),
            blob_digest: (info.blob.digest != info.diff_id.0).then_some(info.blob.digest),
        };
        let mut blob = Counted {
            inner: blob,
            read: 0,
        };
        let deadline = Instant::now() + OTHER_PROCESS_WAIT;
        loop {
            let input = match mapped.take() {
                Some(file) => Input::Mapped(file),
                None => Input::Stream(&mut blob),
            };
            let imported = match &parent {
                // Applied at once, committed after the parent.
                Some(p) if !current.is_in(info.index - 1) => {
                    // Waiting, the layer gives its slot to the next one; it takes one
                    // back, before any layer not yet started, only if it has more to
                    // write (a commit is no work worth a slot).
                    let ready = |wait: ParentWait| {
                        slot.give_up();
                        let parent_in = current.wait_for(info.index - 1);
                        if wait == ParentWait::Content {
                            slot.take_back();
                        }
                        parent_in.map_err(|e| e.to_string())
                    };
                    self.store.import_after(&id, p, input, &options, &ready)
                }
                _ => self.store.import(&id, parent.as_ref(), input, &options),
            };
            let err = match imported {
                Ok(applied) => {
                    self.brought
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(id);
                    return Ok(StoredLayer {
                        blob: Descriptor::new(
                            media_type::OCI_LAYER,
                            applied.diff.diff_id,
                            applied.diff.tar_size,
                        ),
                        diff_id: info.diff_id,
                    });
                }
                Err(e) => e,
            };
            return Err(match err {
                // Another process is bringing the same layer in, or taking it out: wait for
                // it, then use what it brought, refuse a clash, or bring it in after all.
                strata_store::Error::Exists(_) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match self.store.await_layer(&id, left)? {
                        Some(layer) => return stand_in(&layer, info),
                        // A retry needs every byte: `Exists` came before the import read
                        // any, unless another process brought the layer in meanwhile.
                        None if Instant::now() < deadline && blob.read == 0 => continue,
                        None => Error::invalid(
                            format!("store layer {id}"),
                            "other processes kept importing and removing it",
                        ),
                    }
                }
                // Said as every other destination says it.
                strata_store::Error::Mismatch {
                    what: Expected::DiffId,
                    expected,
                    got,
                } => Error::DiffIdMismatch {
                    image: current.config.id().to_string(),
                    index: info.index,
                    expected: expected.to_string(),
                    got: got.to_string(),
                },
                strata_store::Error::Mismatch { expected, got, .. } => Error::BlobMismatch {
                    what: format!(
                        "the digest of layer {} of image {}",
                        info.index,
                        current.config.id()
                    ),
                    expected: expected.to_string(),
                    got: got.to_string(),
                },
                e => Error::invalid(
                    format!(
                        "layer {} of image {} ({})",
                        info.index,
                        current.config.id(),
                        info.blob.digest
                    ),
                    e.to_string(),
                ),
            });
        }
    }
}

/// A reader that counts the bytes read through it.
struct Counted<R> {
    inner: R,
    read: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

/// How long a load waits for another process importing or removing a layer it needs.
const OTHER_PROCESS_WAIT: Duration = Duration::from_secs(600);

/// The stored layer `layer` as layer `info` of an image: only an applied layer of its
/// diffID stands for its chain; anything else under the chain's ID is a clash.
fn stand_in(layer: &strata_store::Layer, info: &LayerInfo) -> Result<StoredLayer, Error> {
    match (&layer.diff, layer.status) {
        (Some(d), LayerStatus::Applied) if d.diff_id == info.diff_id.0 => Ok(StoredLayer {
            blob: Descriptor::new(media_type::OCI_LAYER, d.diff_id, d.tar_size),
            diff_id: info.diff_id,
        }),
        (diff, status) => Err(Error::invalid(
            format!("store layer {}", layer.id),
            format!(
                "clashes with layer {} of the image: it is {}{} and not diffID {}, so it cannot stand for chain {}",
                info.index,
                status.name(),
                diff.as_ref()
                    .map(|d| format!(" with diffID {}", d.diff_id))
                    .unwrap_or_default(),
                info.diff_id,
                info.chain_id
            ),
        )),
    }
}

impl ImageDestination for StoreDestination {
    fn describe(&self) -> String {
        format!("strata:{}", self.store.root().display())
    }

    fn layer_jobs(&self) -> usize {
        self.jobs
    }

    /// Twice as many as run: those waiting for their parents leave their slots to others.
    fn layers_in_hand(&self, jobs: usize) -> usize {
        2 * jobs
    }

    fn begin_image(&mut self, config: &ImageConfig) -> Result<(), Error> {
        self.put_blob(config.raw())?;
        let chains = config.chain_ids();
        self.current = Some(Current {
            config: config.clone(),
            done: Mutex::new(vec![None; chains.len()]),
            chains,
            changed: Condvar::new(),
        });
        Ok(())
    }

    fn reuse_layer(&self, layer: &LayerInfo) -> Result<Option<StoredLayer>, Error> {
        let current = self.current()?;
        let found = self.stored(layer)?;
        if let Some(stored) = &found {
            // The bytes are not read again: their size is checked here as the stream
            // would (against the tar, or the compressed blob if the store keeps it).
            let held = if layer.blob.digest == layer.diff_id.0 {
                Some(stored.blob.size)
            } else {
                self.kept_size(&layer.blob.digest)
            };
            if let Some(held) = held.filter(|&n| n != layer.blob.size) {
                let e = Error::BlobMismatch {
                    what: format!(
                        "the size of layer {} of image {} ({}), as the store holds it",
                        layer.index,
                        current.config.id(),
                        layer.blob.digest
                    ),
                    expected: format!("{} bytes", layer.blob.size),
                    got: format!("{held} bytes"),
                };
                current.finish(layer.index, Err(e.to_string()));
                return Err(e);
            }
            current.finish(layer.index, Ok(()));
        }
        Ok(found)
    }

    fn put_layer(&self, layer: LayerStream<'_>) -> Result<StoredLayer, Error> {
        let current = self.current()?;
        let locations: Vec<BlobOrigin> = layer
            .origins()
            .iter()
            .filter(|o| matches!(o, BlobOrigin::Registry { .. }))
            .cloned()
            .collect();
        let (info, blob, mapped) = layer.into_unverified();
        let index = info.index;
        let slot = self.slots.hold(index);
        // The parent may still be coming: the store applies this layer meanwhile, as far
        // as it can without the parent's content, and makes it visible after it.
        let result = if locations.is_empty() || index == 0 || current.is_in(index - 1) {
            self.import(current, &info, blob, mapped, &slot)
        } else {
            // A download must not stall while the apply waits for the parent (the
            // registry would time out): its bytes are taken into the staging area first.
            (|| {
                let staging = self.store.staging()?;
                let spool = staging.path().join("layer");
                let mut file = std::fs::File::create(&spool)
                    .map_err(|e| Error::io(format!("cannot create {}", spool.display()), e))?;
                let mut blob = blob;
                crate::stream::pump(&mut blob, &mut file)
                    .map_err(|e| Error::io(format!("reading layer {index}"), e))?;
                drop(file);
                let open = || {
                    std::fs::File::open(&spool)
                        .map_err(|e| Error::io(format!("cannot open {}", spool.display()), e))
                };
                let mapped = MappedFile::lease(open()?).ok();
                let stored = self.import(current, &info, Box::new(open()?), mapped, &slot)?;
                staging.done()?;
                Ok(stored)
            })()
        };
        current.finish(index, result.as_ref().map(drop).map_err(|e| e.to_string()));
        if result.is_ok() && info.compression() != Compression::None {
            // The blob was kept: remember where it came from, for mounts on a later push.
            for origin in &locations {
                if let BlobOrigin::Registry { host, repository } = origin {
                    self.store.add_blob_location(
                        &info.blob.digest,
                        host.as_str(),
                        repository.as_str(),
                    )?;
                }
            }
        }
        result
    }

    fn end_image(&mut self, image: ImageRecord<'_>) -> Result<(), Error> {
        let current = self.current.take().ok_or_else(|| {
            Error::invalid("the store destination", "ended an image it did not begin")
        })?;
        // The source's manifest is kept when the blobs it lists are the ones kept, or the
        // layer tars themselves (a Docker 25 archive's), which the store rebuilds bit-exact.
        let manifest = match image.source_manifest {
            Some(m) => {
                let parsed = Manifest::parse(&m.bytes, &m.media_type, "the source manifest")?;
                let kept = parsed.config.digest == image.config.id().0
                    && parsed.layers.len() == image.source_layers.len()
                    && parsed
                        .layers
                        .iter()
                        .zip(image.source_layers)
                        .all(|(d, l)| d.digest == l.blob.digest)
                    // Sizes as the store holds them: a tar's was checked as it streamed
                    // or when reused; a compressed blob's against the kept blob (a reused
                    // layer's blob was not read, and one not kept cannot be checked).
                    && parsed.layers.iter().zip(image.source_layers).all(|(d, l)| {
                        d.digest == l.diff_id.0 || self.kept_size(&d.digest) == Some(d.size)
                    });
                if kept {
                    let digest = self.put_blob(&m.bytes)?;
                    Some(ManifestRef {
                        digest,
                        media_type: m.media_type.clone(),
                    })
                } else {
                    None
                }
            }
            None => None,
        };
        let names: Vec<String> = match &self.name {
            Some(n) => vec![n.to_string()],
            None => image.names.iter().map(|n| n.to_string()).collect(),
        };
        self.pending.push(NewImage {
            id: image.config.id().0,
            top_layer: current.chains.last().map(layer_id),
            manifest,
            parent: image.parent.map(|p| p.0),
            names,
        });
        Ok(())
    }

    fn commit(&mut self) -> Result<(), Error> {
        if self.name.is_some() && self.pending.len() > 1 {
            return Err(Error::invalid(
                self.describe(),
                format!("one name was given for {} images", self.pending.len()),
            ));
        }
        self.store.put_images(&self.pending)?;
        self.pending.clear();
        self.committed = true;
        if let Some(lease) = self.lease.take() {
            lease.release()?;
        }
        Ok(())
    }
}

/// Records that the repository `reference` names holds the blobs of the images `report`
/// says were pushed there (configs and layers), so that a later push of them to another
/// repository of that registry asks it to mount them instead of sending them.
pub fn remember_push(
    store: &Store,
    reference: &Reference,
    report: &crate::CopyReport,
) -> Result<(), Error> {
    let failed = |source| Error::Registry {
        what: format!("docker://{reference}"),
        error: Box::new(source),
    };
    let host = RegistryHost::parse(reference.domain()).map_err(failed)?;
    let repository = RepositoryName::parse(reference.path()).map_err(failed)?;
    for image in &report.images {
        let blobs = std::iter::once(image.id.0).chain(image.layers.iter().map(|l| l.stored.digest));
        for digest in blobs {
            store.add_blob_location(&digest, host.as_str(), repository.as_str())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free(slots: &Slots) -> usize {
        slots.state.lock().unwrap().free
    }

    fn waiting(slots: &Slots) -> usize {
        slots.state.lock().unwrap().waiting.len()
    }

    /// The next free slot goes to a layer taking its slot back after its parent came,
    /// then to the lowest layer not yet started, whichever asked first.
    #[test]
    fn slots_go_to_resuming_layers_first_then_in_layer_order() {
        let slots = Slots::new(1);
        let resuming = slots.hold(1);
        resuming.give_up();
        let running = slots.hold(0);
        let order = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for index in [4, 2, 3] {
                let (slots, order) = (&slots, &order);
                s.spawn(move || {
                    let _new = slots.hold(index);
                    order.lock().unwrap().push(index);
                });
                while waiting(slots) < 1 + [4, 2, 3].iter().position(|&i| i == index).unwrap() {
                    std::thread::yield_now();
                }
            }
            s.spawn(|| {
                resuming.take_back();
                order.lock().unwrap().push(1);
                drop(resuming);
            });
            while waiting(&slots) < 4 {
                std::thread::yield_now();
            }
            drop(running);
        });
        assert_eq!(*order.lock().unwrap(), [1, 2, 3, 4]);
        assert_eq!(free(&slots), 1);
    }

    /// A slot given up is not given back again when its holder ends (a layer that waited
    /// only for its commit finishes without one).
    #[test]
    fn a_slot_given_up_is_given_back_once() {
        let slots = Slots::new(2);
        let a = slots.hold(0);
        let b = slots.hold(1);
        assert_eq!(free(&slots), 0);
        a.give_up();
        a.give_up();
        assert_eq!(free(&slots), 1);
        drop(a);
        assert_eq!(free(&slots), 1);
        b.give_up();
        b.take_back();
        assert_eq!(free(&slots), 1);
        drop(b);
        assert_eq!(free(&slots), 2);
    }
}
