//! # strata-snapshotter: a Strata store as a containerd proxy snapshotter
//!
//! containerd takes storage drivers as *proxy snapshotters*: a process serving its
//! snapshots gRPC API (`containerd.services.snapshots.v1.Snapshots`) on a unix socket,
//! declared in containerd's config:
//!
//! ```toml
//! [proxy_plugins.strata]
//!   type = "snapshot"
//!   address = "/run/strata/snapshotter.sock"
//! ```
//!
//! [`serve`] is that process: each request is answered by [`strata_store::Snapshotter`]
//! (the bookkeeping: keys, kinds, parents, labels, times; a snapshot is a store layer) on
//! a blocking thread, so the store stays synchronous and this crate alone holds tokio.
//! Here live only the wire concerns: messages, error codes, mount options, the filter
//! language of `List` ([`filter`]) and the field masks of `Update`.
//!
//! Requests carry containerd's namespace header and a `snapshotter` field; like
//! containerd's own snapshotters, the server ignores both (containerd's metadata layer
//! keeps namespaces apart in the keys it sends).

#![warn(missing_docs)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_store::{SnapshotError, SnapshotInfo, SnapshotKind, SnapshotMount, Snapshotter, Store};
use tonic::{Code, Request, Response, Status};

pub mod filter;
pub mod proto;

use proto::snapshots as pb;
use proto::snapshots::snapshots_server::{Snapshots, SnapshotsServer};

/// What serving can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The socket could not be made (a missing directory, no permission).
    #[error("cannot listen on {}: {source}", path.display())]
    Listen {
        /// The socket's path.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// Something other than a socket is at the socket's path: it is left alone.
    #[error("{} exists and is not a socket: not replacing it", .0.display())]
    NotASocket(PathBuf),
    /// The async runtime could not start (threads, signal handlers).
    #[error("starting the server's runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The gRPC server failed.
    #[error("serving gRPC: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The store could not be opened for snapshots.
    #[error(transparent)]
    Store(#[from] SnapshotError),
}

/// Serves the snapshots of `store` on the unix socket `address` until SIGTERM or SIGINT,
/// then removes the socket. A socket left by an earlier server is replaced; `ready` is
/// called once the socket listens.
pub fn serve(store: Store, address: &Path, ready: impl FnOnce()) -> Result<(), ServeError> {
    let snapshotter = Arc::new(Snapshotter::new(store)?);
    match std::fs::symlink_metadata(address) {
        Ok(meta) => {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                return Err(ServeError::NotASocket(address.to_path_buf()));
            }
            std::fs::remove_file(address).map_err(|source| ServeError::Listen {
                path: address.to_path_buf(),
                source,
            })?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(ServeError::Listen {
                path: address.to_path_buf(),
                source,
            })
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("strata-snapshotter")
        .build()
        .map_err(ServeError::Runtime)?;
    runtime.block_on(async {
        let listener =
            tokio::net::UnixListener::bind(address).map_err(|source| ServeError::Listen {
                path: address.to_path_buf(),
                source,
            })?;
        ready();
        let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
        let served = tonic::transport::Server::builder()
            .add_service(SnapshotsServer::new(Service { snapshotter }))
            .serve_with_incoming_shutdown(incoming, stopped())
            .await;
        let _ = std::fs::remove_file(address);
        served.map_err(ServeError::from)
    })
}

/// Resolves on SIGTERM or SIGINT.
async fn stopped() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        // Without signal handlers, serve until killed.
        _ => std::future::pending().await,
    }
}

/// The gRPC service over one [`Snapshotter`].
pub struct Service {
    snapshotter: Arc<Snapshotter>,
}

impl Service {
    /// The service answering from `snapshotter`; wrap it in `SnapshotsServer` to serve.
    pub fn new(snapshotter: Snapshotter) -> Service {
        Service {
            snapshotter: Arc::new(snapshotter),
        }
    }

    /// Runs `f` on a blocking thread (the store is synchronous).
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Snapshotter) -> Result<T, SnapshotError> + Send + 'static,
    ) -> Result<T, Status> {
        let snapshotter = self.snapshotter.clone();
        tokio::task::spawn_blocking(move || f(&snapshotter))
            .await
            .map_err(|e| Status::internal(format!("the request's worker failed: {e}")))?
            .map_err(status)
    }
}

/// The gRPC status for a snapshot error; containerd maps the codes back to its error
/// kinds (`errdefs.FromGRPC`).
pub fn status(e: SnapshotError) -> Status {
    let code = match &e {
        SnapshotError::NotFound(_) => Code::NotFound,
        SnapshotError::Exists(_) | SnapshotError::TargetExists { .. } => Code::AlreadyExists,
        SnapshotError::Refused { .. } => Code::FailedPrecondition,
        SnapshotError::Store(strata_store::Error::BadId { .. }) => Code::InvalidArgument,
        // containerd retries what is unavailable.
        SnapshotError::Store(strata_store::Error::Busy { .. }) => Code::Unavailable,
        SnapshotError::Store(_) => Code::Unknown,
    };
    Status::new(code, e.to_string())
}

fn labels(map: HashMap<String, String>) -> BTreeMap<String, String> {
    map.into_iter().collect()
}

fn parent(p: String) -> Option<String> {
    (!p.is_empty()).then_some(p)
}

fn timestamp(ns: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ns.div_euclid(1_000_000_000),
        nanos: ns.rem_euclid(1_000_000_000) as i32,
    }
}

fn info(i: SnapshotInfo) -> pb::Info {
    pb::Info {
        name: i.name,
        parent: i.parent.unwrap_or_default(),
        kind: match i.kind {
            SnapshotKind::View => pb::Kind::View,
            SnapshotKind::Active => pb::Kind::Active,
            SnapshotKind::Committed => pb::Kind::Committed,
        } as i32,
        created_at: Some(timestamp(i.created)),
        updated_at: Some(timestamp(i.updated)),
        labels: i.labels.into_iter().collect(),
    }
}

/// Whether the kernel's overlayfs takes `NAME=off` for a feature that is on by default
/// here (`/sys/module/overlay/parameters/NAME` is `Y`), and the ones that must be off for
/// diffs taken from the upper directory to be right.
fn overlay_off_options() -> Vec<String> {
    let mut out = Vec::new();
    for name in ["index", "redirect_dir", "metacopy"] {
        let param = std::fs::read_to_string(format!("/sys/module/overlay/parameters/{name}"));
        match (name, param.as_deref().map(str::trim)) {
            // containerd passes index=off whenever the kernel knows it: an upper directory
            // still mounted may then become a lower one (a commit while mounted).
            ("index", Ok(_)) => out.push("index=off".to_string()),
            (_, Ok("Y")) => out.push(format!("{name}=off")),
            _ => {}
        }
    }
    out
}

/// The mounts as containerd performs them.
fn mounts(ms: Vec<SnapshotMount>) -> Vec<proto::Mount> {
    ms.into_iter()
        .map(|m| match m {
            SnapshotMount::Bind { source, read_only } => proto::Mount {
                r#type: "bind".into(),
                source: source.to_string_lossy().into_owned(),
                target: String::new(),
                options: vec![if read_only { "ro" } else { "rw" }.into(), "rbind".into()],
            },
            SnapshotMount::Overlay { lowers, upper } => {
                let mut options = overlay_off_options();
                if let Some((upper, work)) = upper {
                    options.push(format!("workdir={}", work.display()));
                    options.push(format!("upperdir={}", upper.display()));
                }
                let lowers: Vec<String> = lowers
                    .iter()
                    .map(|l| l.to_string_lossy().into_owned())
                    .collect();
                options.push(format!("lowerdir={}", lowers.join(":")));
                proto::Mount {
                    r#type: "overlay".into(),
                    source: "overlay".into(),
                    target: String::new(),
                    options,
                }
            }
        })
        .collect()
}

/// The labels after an `Update` of `current` with `asked` under `paths` (containerd's
/// rules: no paths or `labels` replace them all, `labels.KEY` sets or, empty or absent,
/// deletes one key; any other path is refused).
pub fn updated_labels(
    current: &BTreeMap<String, String>,
    asked: &HashMap<String, String>,
    paths: &[String],
) -> Result<BTreeMap<String, String>, Status> {
    let all = || asked.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    if paths.is_empty() {
        return Ok(all());
    }
    let mut labels = current.clone();
    for path in paths {
        if path == "labels" {
            labels = all();
        } else if let Some(key) = path.strip_prefix("labels.") {
            match asked.get(key).filter(|v| !v.is_empty()) {
                Some(v) => {
                    labels.insert(key.to_string(), v.clone());
                }
                None => {
                    labels.remove(key);
                }
            }
        } else {
            return Err(Status::invalid_argument(format!(
                "cannot update field `{path}` of a snapshot: only its labels can change"
            )));
        }
    }
    Ok(labels)
}

/// How many snapshots one `List` message carries.
const LIST_BATCH: usize = 100;

#[tonic::async_trait]
impl Snapshots for Service {
    async fn prepare(
        &self,
        request: Request<pb::PrepareSnapshotRequest>,
    ) -> Result<Response<pb::PrepareSnapshotResponse>, Status> {
        let r = request.into_inner();
        let ms = self
            .run(move |s| s.prepare(&r.key, parent(r.parent).as_deref(), labels(r.labels)))
            .await?;
        Ok(Response::new(pb::PrepareSnapshotResponse {
            mounts: mounts(ms),
        }))
    }

    async fn view(
        &self,
        request: Request<pb::ViewSnapshotRequest>,
    ) -> Result<Response<pb::ViewSnapshotResponse>, Status> {
        let r = request.into_inner();
        let ms = self
            .run(move |s| s.view(&r.key, parent(r.parent).as_deref(), labels(r.labels)))
            .await?;
        Ok(Response::new(pb::ViewSnapshotResponse {
            mounts: mounts(ms),
        }))
    }

    async fn mounts(
        &self,
        request: Request<pb::MountsRequest>,
    ) -> Result<Response<pb::MountsResponse>, Status> {
        let r = request.into_inner();
        let ms = self.run(move |s| s.mounts(&r.key)).await?;
        Ok(Response::new(pb::MountsResponse { mounts: mounts(ms) }))
    }

    async fn commit(
        &self,
        request: Request<pb::CommitSnapshotRequest>,
    ) -> Result<Response<()>, Status> {
        let r = request.into_inner();
        self.run(move |s| s.commit(&r.name, &r.key, labels(r.labels)))
            .await?;
        Ok(Response::new(()))
    }

    async fn remove(
        &self,
        request: Request<pb::RemoveSnapshotRequest>,
    ) -> Result<Response<()>, Status> {
        let r = request.into_inner();
        self.run(move |s| s.remove(&r.key)).await?;
        Ok(Response::new(()))
    }

    async fn stat(
        &self,
        request: Request<pb::StatSnapshotRequest>,
    ) -> Result<Response<pb::StatSnapshotResponse>, Status> {
        let r = request.into_inner();
        let i = self.run(move |s| s.stat(&r.key)).await?;
        Ok(Response::new(pb::StatSnapshotResponse {
            info: Some(info(i)),
        }))
    }

    async fn update(
        &self,
        request: Request<pb::UpdateSnapshotRequest>,
    ) -> Result<Response<pb::UpdateSnapshotResponse>, Status> {
        let r = request.into_inner();
        let asked = r
            .info
            .ok_or_else(|| Status::invalid_argument("an update needs the snapshot's info"))?;
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        // Checked before anything is read, so a bad path changes nothing.
        updated_labels(&BTreeMap::new(), &HashMap::new(), &paths)?;
        let i = self
            .run(move |s| {
                let current = s.stat(&asked.name)?;
                let labels = updated_labels(&current.labels, &asked.labels, &paths)
                    .unwrap_or_else(|_| unreachable!("the paths were checked"));
                s.set_labels(&asked.name, labels)
            })
            .await?;
        Ok(Response::new(pb::UpdateSnapshotResponse {
            info: Some(info(i)),
        }))
    }

    type ListStream =
        tokio_stream::Iter<std::vec::IntoIter<Result<pb::ListSnapshotsResponse, Status>>>;

    async fn list(
        &self,
        request: Request<pb::ListSnapshotsRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        let r = request.into_inner();
        let filters = r
            .filters
            .iter()
            .map(|f| filter::Filter::parse(f))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let all = self.run(|s| s.list()).await?;
        let infos: Vec<pb::Info> = all
            .into_iter()
            .filter(|i| filter::any_matches(&filters, i))
            .map(info)
            .collect();
        let batches: Vec<_> = infos
            .chunks(LIST_BATCH)
            .map(|c| Ok(pb::ListSnapshotsResponse { info: c.to_vec() }))
            .collect();
        Ok(Response::new(tokio_stream::iter(batches)))
    }

    async fn usage(
        &self,
        request: Request<pb::UsageRequest>,
    ) -> Result<Response<pb::UsageResponse>, Status> {
        let r = request.into_inner();
        let u = self.run(move |s| s.usage(&r.key)).await?;
        Ok(Response::new(pb::UsageResponse {
            size: u.size as i64,
            inodes: u.inodes as i64,
        }))
    }

    async fn cleanup(&self, _request: Request<pb::CleanupRequest>) -> Result<Response<()>, Status> {
        self.run(|s| s.cleanup().map(|_| ())).await?;
        Ok(Response::new(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn update_masks_follow_containerd() {
        let current: BTreeMap<String, String> = [("a", "1"), ("b", "2")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let asked = map(&[("b", "20"), ("c", "3")]);
        let got = |paths: &[&str]| {
            let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
            updated_labels(&current, &asked, &paths).map(|l| l.into_iter().collect::<Vec<_>>())
        };
        let pairs = |p: &[(&str, &str)]| {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(got(&[]).unwrap(), pairs(&[("b", "20"), ("c", "3")]));
        assert_eq!(got(&["labels"]).unwrap(), pairs(&[("b", "20"), ("c", "3")]));
        assert_eq!(
            got(&["labels.c"]).unwrap(),
            pairs(&[("a", "1"), ("b", "2"), ("c", "3")])
        );
        assert_eq!(got(&["labels.a"]).unwrap(), pairs(&[("b", "2")]));
        let e = got(&["parent"]).unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains("`parent`"), "{}", e.message());
    }

    #[test]
    fn errors_map_to_the_codes_containerd_expects() {
        let code = |e| status(e).code();
        assert_eq!(code(SnapshotError::NotFound("k".into())), Code::NotFound);
        assert_eq!(code(SnapshotError::Exists("k".into())), Code::AlreadyExists);
        // A remote snapshotter's answer: containerd then skips the unpack.
        let target = SnapshotError::TargetExists {
            target: "sha256:ab".into(),
            layer: strata_store::LayerId::new("ab").unwrap(),
        };
        assert_eq!(code(target), Code::AlreadyExists);
        // containerd's suite wants "remove" in the message of a refused removal.
        let e = status(SnapshotError::Refused {
            key: "p".into(),
            reason: "failed to remove: it has children (remove them first)".into(),
        });
        assert_eq!(e.code(), Code::FailedPrecondition);
        assert!(e.message().contains("remove"), "{}", e.message());
        // A layer another process reads: retryable.
        let busy = SnapshotError::Store(strata_store::Error::Busy {
            id: strata_store::LayerId::new("ctrd-1").unwrap(),
            what: "freeze",
            waited: std::time::Duration::from_secs(2),
        });
        assert_eq!(code(busy), Code::Unavailable);
    }

    #[test]
    fn mounts_are_what_containerd_mounts() {
        let bind = mounts(vec![SnapshotMount::Bind {
            source: "/s/ctrd-1/diff".into(),
            read_only: true,
        }]);
        assert_eq!(
            (bind[0].r#type.as_str(), bind[0].source.as_str()),
            ("bind", "/s/ctrd-1/diff")
        );
        assert_eq!(bind[0].options, ["ro", "rbind"]);
        let overlay = mounts(vec![SnapshotMount::Overlay {
            lowers: vec!["/s/ctrd-2/diff".into(), "/s/ctrd-1/diff".into()],
            upper: Some(("/s/ctrd-3/diff".into(), "/s/ctrd-3/work".into())),
        }]);
        let o = &overlay[0].options;
        assert_eq!(overlay[0].r#type, "overlay");
        assert!(!o.iter().any(|x| x == "index=on"), "{o:?}");
        assert_eq!(
            o[o.len() - 3..],
            [
                "workdir=/s/ctrd-3/work",
                "upperdir=/s/ctrd-3/diff",
                "lowerdir=/s/ctrd-2/diff:/s/ctrd-1/diff"
            ]
        );
    }

    #[test]
    fn timestamps_keep_nanoseconds() {
        let t = timestamp(1_700_000_000_123_456_789);
        assert_eq!((t.seconds, t.nanos), (1_700_000_000, 123_456_789));
    }
}
