//! One 512-byte tar header block: field offsets, numbers (octal and base-256), checksum.

pub const BLOCK: usize = 512;

/// Byte ranges of the fields of a ustar/GNU header.
pub mod field {
    use std::ops::Range;
    pub const NAME: Range<usize> = 0..100;
    pub const MODE: Range<usize> = 100..108;
    pub const UID: Range<usize> = 108..116;
    pub const GID: Range<usize> = 116..124;
    pub const SIZE: Range<usize> = 124..136;
    pub const MTIME: Range<usize> = 136..148;
    pub const CHKSUM: Range<usize> = 148..156;
    pub const TYPEFLAG: usize = 156;
    pub const LINKNAME: Range<usize> = 157..257;
    pub const MAGIC: Range<usize> = 257..263;
    pub const VERSION: Range<usize> = 263..265;
    pub const UNAME: Range<usize> = 265..297;
    pub const GNAME: Range<usize> = 297..329;
    pub const DEVMAJOR: Range<usize> = 329..337;
    pub const DEVMINOR: Range<usize> = 337..345;
    /// ustar/POSIX only; GNU headers put atime/ctime and the sparse map here.
    pub const PREFIX: Range<usize> = 345..500;
    /// Old GNU sparse header: 4 (offset, numbytes) pairs of 12 bytes each.
    pub const GNU_SPARSE: Range<usize> = 386..482;
    pub const GNU_ISEXTENDED: usize = 482;
    pub const GNU_REALSIZE: Range<usize> = 483..495;
}

/// Which dialect a header is written in, from its magic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `ustar\0` + `00`: POSIX ustar or PAX.
    Ustar,
    /// `ustar  \0`: GNU tar's own format.
    Gnu,
    /// No magic: pre-POSIX (V7) headers.
    V7,
}

pub fn format(block: &[u8; BLOCK]) -> Format {
    match &block[field::MAGIC.start..field::VERSION.end] {
        b"ustar\x0000" => Format::Ustar,
        b"ustar  \0" => Format::Gnu,
        // Some writers put other version bytes after `ustar\0`.
        m if &m[..6] == b"ustar\0" => Format::Ustar,
        _ => Format::V7,
    }
}

/// The bytes of a NUL-terminated string field.
pub fn cstr(field: &[u8]) -> &[u8] {
    match field.iter().position(|&b| b == 0) {
        Some(n) => &field[..n],
        None => field,
    }
}

/// Parses a numeric field: octal (optionally space/NUL padded) or GNU base-256.
/// Returns `None` when the field is malformed.
pub fn number(field: &[u8]) -> Option<i128> {
    if let Some(&first) = field.first() {
        if first & 0x80 != 0 {
            // Base-256 two's complement; bit 6 of the first byte is the sign.
            let inv: u8 = if first & 0x40 != 0 { 0xff } else { 0 };
            let mut x: u64 = 0;
            for (i, &c) in field.iter().enumerate() {
                let mut c = c ^ inv;
                if i == 0 {
                    c &= 0x7f;
                }
                if x >> 56 != 0 {
                    return None;
                }
                x = x << 8 | c as u64;
            }
            if x >> 63 != 0 {
                return None;
            }
            return Some(if inv == 0xff { !(x as i64) } else { x as i64 } as i128);
        }
    }
    // Go's rule: trim spaces and NULs at both ends, then stop at the first NUL.
    let pad = |b: &u8| *b == b' ' || *b == 0;
    let start = field.iter().position(|b| !pad(b)).unwrap_or(field.len());
    let end = field.iter().rposition(|b| !pad(b)).map_or(start, |e| e + 1);
    let digits = cstr(&field[start..end]);
    let mut v: i128 = 0;
    for &b in digits {
        if !(b'0'..=b'7').contains(&b) {
            return None;
        }
        v = v * 8 + (b - b'0') as i128;
        if v > i64::MAX as i128 {
            return None;
        }
    }
    Some(v)
}

/// Checks the header checksum (unsigned sum, or the signed sum old writers used).
pub fn checksum_ok(block: &[u8; BLOCK]) -> bool {
    let Some(want) = number(&block[field::CHKSUM]) else {
        return false;
    };
    // The checksum field itself counts as spaces. Whole-block sums, without a branch per
    // byte, so that the compiler vectorizes them (a header per entry adds up).
    let chk = &block[field::CHKSUM];
    let spaces = chk.len() as i32 * i32::from(b' ');
    let sum = |bytes: &[u8], f: fn(u8) -> i32| bytes.iter().map(|&b| f(b)).sum::<i32>();
    let unsigned = sum(block, i32::from) - sum(chk, i32::from) + spaces;
    let signed = sum(block, |b| i32::from(b as i8)) - sum(chk, |b| i32::from(b as i8)) + spaces;
    want == i128::from(unsigned) || want == i128::from(signed)
}

/// Writes `value` as zero-padded octal digits followed by a NUL (Go's encoding), or
/// returns false if it does not fit.
pub fn put_octal(field: &mut [u8], value: u64) -> bool {
    let digits = field.len() - 1;
    if digits < 22 && value >= 1u64 << (3 * digits) {
        return false;
    }
    let mut v = value;
    for i in (0..digits).rev() {
        field[i] = b'0' + (v & 7) as u8;
        v >>= 3;
    }
    field[digits] = 0;
    true
}

/// Writes `value` in GNU base-256 (for numbers octal cannot hold).
pub fn put_base256(field: &mut [u8], value: i64) {
    let mut v = value;
    for b in field.iter_mut().rev() {
        *b = v as u8;
        v >>= 8;
    }
    field[0] |= 0x80;
}

/// Computes and stores the checksum as 6 octal digits, NUL, space.
pub fn set_checksum(block: &mut [u8; BLOCK]) {
    block[field::CHKSUM].fill(b' ');
    let sum: u64 = block.iter().map(|&b| b as u64).sum();
    put_octal(
        &mut block[field::CHKSUM.start..field::CHKSUM.start + 7],
        sum,
    );
}

/// Padding after `len` bytes of data to the next block boundary.
pub fn padding(len: u64) -> u64 {
    (BLOCK as u64 - len % BLOCK as u64) % BLOCK as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_fields_parse_with_padding() {
        assert_eq!(number(b"0000644\0"), Some(0o644));
        assert_eq!(number(b"   644 \0"), Some(0o644));
        assert_eq!(number(b"\0\0\0\0\0\0\0\0"), Some(0));
        assert_eq!(number(b"00006x4\0"), None);
    }

    #[test]
    fn base256_positive_negative_and_overflow() {
        let mut f = [0u8; 12];
        put_base256(&mut f, 1 << 40);
        assert_eq!(number(&f), Some(1 << 40));
        put_base256(&mut f, -315619200);
        assert_eq!(number(&f), Some(-315619200));
        let mut huge = [0u8; 12];
        huge[0] = 0x80;
        huge[1] = 0x7f;
        huge[2..].fill(0xff);
        assert_eq!(number(&huge), None);
    }

    #[test]
    fn octal_writer_refuses_what_does_not_fit() {
        let mut f = [0u8; 8];
        assert!(put_octal(&mut f, 0o7777777));
        assert_eq!(&f, b"7777777\0");
        assert!(!put_octal(&mut f, 0o10000000));
    }
}
