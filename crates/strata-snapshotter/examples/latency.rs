//! `latency SOCK [N]`: the round-trip time of Prepare, Mounts and Commit over containerd's
//! snapshots gRPC API, against the server listening on SOCK (Strata's, or any other), as
//! containerd's proxy client makes them: one connection, one request at a time. Each of N
//! rounds prepares an active snapshot on a committed base, asks its mounts, writes one
//! 4 KiB file into its writable directory and commits it; what it made is removed at the
//! end. Prints p50 and p99 in microseconds, one line per call.
//!
//! `bench/snapshotter.sh` runs it against `strata snapshotter` and containerd's overlay
//! snapshotter.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use strata_snapshotter::proto::snapshots as pb;
use strata_snapshotter::proto::Mount;
use tonic::transport::{Channel, Endpoint, Uri};

type Client = pb::snapshots_client::SnapshotsClient<Channel>;
type Failure = Box<dyn std::error::Error>;

const SNAPSHOTTER: &str = "latency";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Failure> {
    let args: Vec<String> = std::env::args().collect();
    let (sock, rounds) = match &args[1..] {
        [sock] => (PathBuf::from(sock), 200),
        [sock, n] => (PathBuf::from(sock), n.parse()?),
        _ => return Err("usage: latency SOCK [N]".into()),
    };
    let channel = Endpoint::try_from("http://[::]:0")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let sock = sock.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(sock).await?))
            }
        }))
        .await?;
    let mut client = Client::new(channel);
    let tag = format!("latency-{}", std::process::id());
    let base = format!("{tag}-base");
    let mounts = prepare(&mut client, &format!("{base}-active"), "").await?;
    write_file(&mounts)?;
    commit(&mut client, &base, &format!("{base}-active")).await?;

    let mut times: [Vec<Duration>; 3] = Default::default();
    let mut made = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let key = format!("{tag}-active-{i}");
        let name = format!("{tag}-committed-{i}");
        let t = Instant::now();
        prepare(&mut client, &key, &base).await?;
        times[0].push(t.elapsed());
        let t = Instant::now();
        let mounts = client
            .mounts(pb::MountsRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: key.clone(),
            })
            .await?
            .into_inner()
            .mounts;
        times[1].push(t.elapsed());
        write_file(&mounts)?;
        let t = Instant::now();
        commit(&mut client, &name, &key).await?;
        times[2].push(t.elapsed());
        made.push(name);
    }
    made.push(base);
    for key in made {
        client
            .remove(pb::RemoveSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key,
            })
            .await?;
    }
    for (call, mut t) in ["Prepare", "Mounts", "Commit"].into_iter().zip(times) {
        t.sort();
        let at = |q: usize| t[(t.len() * q / 100).min(t.len() - 1)].as_micros();
        println!("{call} {} {}", at(50), at(99));
    }
    Ok(())
}

async fn prepare(client: &mut Client, key: &str, parent: &str) -> Result<Vec<Mount>, Failure> {
    Ok(client
        .prepare(pb::PrepareSnapshotRequest {
            snapshotter: SNAPSHOTTER.into(),
            key: key.into(),
            parent: parent.into(),
            labels: Default::default(),
        })
        .await?
        .into_inner()
        .mounts)
}

async fn commit(client: &mut Client, name: &str, key: &str) -> Result<(), Failure> {
    client
        .commit(pb::CommitSnapshotRequest {
            snapshotter: SNAPSHOTTER.into(),
            name: name.into(),
            key: key.into(),
            labels: Default::default(),
        })
        .await?;
    Ok(())
}

/// Writes a 4 KiB file into the writable directory of an active snapshot's mounts (the
/// upper directory of an overlay, or the source of a bind mount), as an unpack would
/// through the mount.
fn write_file(mounts: &[Mount]) -> Result<(), Failure> {
    let dir = mounts
        .iter()
        .find_map(|m| match m.r#type.as_str() {
            "bind" => Some(m.source.clone()),
            _ => m
                .options
                .iter()
                .find_map(|o| o.strip_prefix("upperdir=").map(str::to_string)),
        })
        .ok_or("no writable directory in the mounts")?;
    std::fs::write(Path::new(&dir).join("file"), [b'x'; 4096])?;
    Ok(())
}
