//! The tar reader on arbitrary bytes: it must never panic (errors are fine), and its
//! sink must see every byte it consumes, in order, split as documented: raw bytes
//! outside files, `file_begin`/`file_data`/`file_end` around each file payload of
//! exactly the entry's data length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_layer::tar::{TarReader, TarSink};
use strata_layer::{Entry, EntryKind, Error, LayerReader};

#[derive(Default)]
struct Seen {
    bytes: Vec<u8>,
    /// (declared payload length, bytes seen) while inside a file payload.
    file: Option<(u64, u64)>,
}

impl TarSink for Seen {
    fn raw(&mut self, b: &[u8]) -> Result<(), Error> {
        assert!(
            self.file.is_none(),
            "raw bytes reported inside a file payload"
        );
        self.bytes.extend_from_slice(b);
        Ok(())
    }
    fn file_begin(&mut self, e: &Entry) -> Result<(), Error> {
        assert!(self.file.is_none(), "file_begin inside a file payload");
        self.file = Some((e.kind.data_len(), 0));
        Ok(())
    }
    fn file_data(&mut self, b: &[u8]) -> Result<(), Error> {
        let f = self
            .file
            .as_mut()
            .expect("file_data outside a file payload");
        f.1 += b.len() as u64;
        assert!(f.1 <= f.0, "more file data than the entry declares");
        self.bytes.extend_from_slice(b);
        Ok(())
    }
    fn file_end(&mut self) -> Result<(), Error> {
        let (want, got) = self.file.take().expect("file_end outside a file payload");
        assert_eq!(
            want, got,
            "file payload length differs from the entry's data length"
        );
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let mut r = TarReader::with_sink(data, Seen::default());
    let mut buf = [0u8; 4096];
    let complete = 'entries: loop {
        match r.next_entry() {
            Ok(Some(entry)) => {
                // A regular file yields exactly `data_len` bytes; other entries (a
                // whiteout written as a non-empty file, say) may yield their raw data.
                let is_file = matches!(entry.kind, EntryKind::File { .. });
                let mut left = entry.kind.data_len();
                loop {
                    match r.read_data(&mut buf) {
                        Ok(0) => break,
                        Ok(n) if is_file => {
                            assert!(
                                n as u64 <= left,
                                "read_data returned more than the file holds"
                            );
                            left -= n as u64;
                        }
                        Ok(_) => {}
                        Err(_) => break 'entries false,
                    }
                }
                if is_file {
                    assert_eq!(left, 0, "read_data ended before the file's data did");
                }
            }
            Ok(None) => break true,
            Err(_) => break false,
        }
    };
    let offset = r.offset();
    let (_, seen) = r.into_parts();
    assert_eq!(
        seen.bytes.len() as u64,
        offset,
        "the sink saw a different byte count than the reader consumed"
    );
    assert!(
        data.starts_with(&seen.bytes),
        "the sink saw bytes that are not the input's, in order"
    );
    if complete {
        // After the end of the archive every trailing byte is consumed too.
        assert_eq!(
            seen.bytes.len(),
            data.len(),
            "a complete read left input unconsumed"
        );
        assert!(
            seen.file.is_none(),
            "the archive ended inside a file payload"
        );
    }
});
