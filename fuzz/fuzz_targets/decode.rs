//! Feeds arbitrary bytes to the wire decoder: it must return an error or a
//! frame, never panic, and never claim to have used more bytes than it had.
#![no_main]

use hookraft::wire::Decoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let decoder = Decoder::new(1 << 16);
    let mut rest = data;
    while let Ok((_, used)) = decoder.decode(rest) {
        assert!(used <= rest.len());
        rest = &rest[used..];
    }
});
