//! The EA-chain, security-descriptor and reparse-buffer parsers on arbitrary bytes: they
//! never panic, what they accept re-encodes to something that parses the same, and SDDL
//! rendering and parsing never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_wclayer::sd::SecurityDescriptor;
use strata_wclayer::{ea, reparse};

fuzz_target!(|data: &[u8]| {
    if let Ok(eas) = ea::decode(data) {
        if let Ok(chain) = ea::encode(&eas) {
            assert_eq!(ea::decode(&chain).expect("an encoded chain decodes"), eas);
        }
    }
    if let Ok(sd) = SecurityDescriptor::parse(data) {
        let bytes = sd.to_bytes();
        assert_eq!(
            SecurityDescriptor::parse(&bytes).expect("a built SD parses"),
            sd
        );
        let sddl = sd.to_sddl();
        let _ = SecurityDescriptor::from_sddl(&sddl);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(sd) = SecurityDescriptor::from_sddl(s) {
            let bytes = sd.to_bytes();
            assert_eq!(
                SecurityDescriptor::parse(&bytes)
                    .expect("an SD built from SDDL parses")
                    .to_bytes(),
                bytes
            );
        }
    }
    if let Ok(rp) = reparse::decode(data) {
        if let Ok(buf) = reparse::encode(&rp) {
            assert_eq!(
                reparse::decode(&buf).expect("an encoded reparse buffer decodes"),
                rp
            );
        }
    }
});
