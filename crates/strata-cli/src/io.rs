//! Files and standard streams for every command: `-` for standard input or output,
//! outputs written atomically, archives and raw documents to standard output.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use anyhow::{Context, Result};
use indicatif::ProgressBar;
use strata_layer::mapped::MappedFile;
use strata_layer::unpack::Input;

use crate::output::stdout_error;

/// Opens an input file, or standard input for `-`, with its size when known.
pub fn open_input(path: &Path) -> Result<(Box<dyn Read + Send>, Option<u64>)> {
    if path == Path::new("-") {
        return Ok((Box::new(io::stdin()), None));
    }
    let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let len = f.metadata().ok().map(|m| m.len());
    Ok((Box::new(f), len))
}

/// Opens a layer to unpack: a file read through maps where it can be
/// ([`strata_layer::mapped`]), else a stream (standard input for `-`); reads advance `bar`.
pub fn open_layer_input(
    path: &Path,
    bar: &ProgressBar,
) -> Result<Input<'static, Box<dyn Read + Send>>> {
    if path == Path::new("-") {
        return Ok(Input::Stream(Box::new(bar.wrap_read(io::stdin()))));
    }
    let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(match MappedFile::lease(f) {
        Ok(mut mapped) => {
            let bar = bar.clone();
            mapped.on_progress(move |n| bar.inc(n));
            Input::Mapped(mapped)
        }
        Err(f) => Input::Stream(Box::new(bar.wrap_read(f))),
    })
}

/// Writes to a file atomically (a temporary sibling renamed into place on success), or
/// to standard output for `-`.
pub fn write_output<T>(
    path: &Path,
    write: impl FnOnce(&mut (dyn Write + Send)) -> Result<T>,
) -> Result<T> {
    if path == Path::new("-") {
        // Straight to the descriptor: std's stdout is line-buffered, which cuts binary
        // output at its newline bytes and copies what follows the last one.
        let mut stdout = io::stdout().lock();
        stdout.flush()?;
        let fd = std::os::fd::AsFd::as_fd(&stdout)
            .try_clone_to_owned()
            .context("cannot write to standard output")?;
        let mut raw = io::BufWriter::with_capacity(64 * 1024, File::from(fd));
        let v = write(&mut raw)?;
        raw.flush()?;
        return Ok(v);
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".strata-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    let v = write(tmp.as_file_mut())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(v)
}

/// Writes bytes exactly as stored (a manifest, a config) to standard output.
pub fn print_raw(bytes: &[u8]) -> Result<()> {
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(stdout_error)
}

/// Whether `path` is this process's standard output (`/dev/stdout`, or the file it was
/// redirected to).
pub fn is_stdout(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (
        std::fs::metadata(path),
        std::fs::metadata("/proc/self/fd/1"),
    ) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}
