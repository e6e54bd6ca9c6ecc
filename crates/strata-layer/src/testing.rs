//! What strata-testkit's `collect()` does, for this crate's own unit tests: the testkit
//! links its own build of strata-layer, whose `LayerReader` is not the one these tests use.

use crate::{Entry, Error, LayerReader};

/// Every entry of `reader` with its data, in stream order, read 7 bytes at a time so that
/// reads cross block boundaries inside an entry.
pub(crate) fn read_entries<R: LayerReader>(mut reader: R) -> Result<Vec<(Entry, Vec<u8>)>, Error> {
    let mut out = Vec::new();
    let mut buf = [0u8; 7];
    while let Some(entry) = reader.next_entry()? {
        let mut data = Vec::new();
        loop {
            let n = reader.read_data(&mut buf)?;
            if n == 0 {
                break;
            }
            data.extend_from_slice(&buf[..n]);
        }
        out.push((entry, data));
    }
    Ok(out)
}
