//! Decoding reserves memory in proportion to the frame, not to the lengths a
//! frame claims. A counting allocator records the largest single allocation
//! made while the decoder runs on this thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use hookraft::wire::{self, Decoder, WireError, HEADER_LEN};
use proptest::collection::vec;
use proptest::prelude::*;

struct Counting;

thread_local! {
    static WATCHING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: the thread's locals may be gone while it exits.
    let watching = WATCHING.try_with(Cell::get).unwrap_or(false);
    if watching {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The largest single allocation made while decoding `bytes`.
fn largest_allocation(decoder: &Decoder, bytes: &[u8]) -> (usize, Result<(), WireError>) {
    LARGEST.with(|l| l.set(0));
    WATCHING.with(|w| w.set(true));
    let result = decoder.decode(bytes).map(|_| ());
    WATCHING.with(|w| w.set(false));
    (LARGEST.with(Cell::get), result)
}

/// The bound the wire module documents: 16 times the payload's size rounded
/// up to a power of two for string fields, and up to 1 MiB that serde
/// reserves ahead for a sequence.
fn bound(payload_len: usize) -> usize {
    16 * payload_len.next_power_of_two().max(1024) + (1 << 20)
}

fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&wire::MAGIC);
    out.extend_from_slice(&wire::VERSION.to_be_bytes());
    out.extend_from_slice(&[2, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&out);
    crc.update(payload);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// bincode's standard varint for a u64 too large for one byte.
fn varint(v: u64) -> Vec<u8> {
    let mut out = vec![253];
    out.extend_from_slice(&v.to_le_bytes());
    out
}

#[test]
fn a_payload_claiming_a_huge_content_allocates_little() {
    // from, to, epoch, AppendTerms (variant 0), prev_index, prev_epoch,
    // commit, one term: index, epoch, Content (variant 1), then a content
    // length of a terabyte with no bytes behind it.
    let mut payload = vec![1, 2, 3, 0, 0, 0, 0, 1, 1, 1, 1];
    payload.extend(varint(1 << 40));
    let (largest, result) = largest_allocation(&Decoder::default(), &framed(&payload));
    assert!(matches!(result, Err(WireError::Malformed(_))), "{result:?}");
    assert!(largest < bound(payload.len()), "allocated {largest} bytes");
}

#[test]
fn a_payload_claiming_a_huge_address_allocates_little() {
    // As above up to the term kind: Config (variant 2), one member, id 1,
    // then an address length of a terabyte.
    let mut payload = vec![1, 2, 3, 0, 0, 0, 0, 1, 1, 1, 2, 1, 1];
    payload.extend(varint(1 << 40));
    let (largest, result) = largest_allocation(&Decoder::default(), &framed(&payload));
    assert!(matches!(result, Err(WireError::Malformed(_))), "{result:?}");
    assert!(largest < bound(payload.len()), "allocated {largest} bytes");
}

#[test]
fn a_payload_claiming_countless_terms_allocates_little() {
    let mut payload = vec![1, 2, 3, 0, 0, 0, 0];
    payload.extend(varint(1 << 60));
    let (largest, result) = largest_allocation(&Decoder::default(), &framed(&payload));
    assert!(matches!(result, Err(WireError::Malformed(_))), "{result:?}");
    assert!(largest < bound(payload.len()), "allocated {largest} bytes");
}

#[test]
fn a_header_over_the_limit_allocates_nothing() {
    let mut bytes = framed(&[]);
    bytes[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
    let head: &[u8; HEADER_LEN] = bytes[..HEADER_LEN].try_into().unwrap();
    LARGEST.with(|l| l.set(0));
    WATCHING.with(|w| w.set(true));
    let result = Decoder::new(1 << 20).header(head);
    WATCHING.with(|w| w.set(false));
    assert!(matches!(result, Err(WireError::TooLarge { .. })));
    assert_eq!(LARGEST.with(Cell::get), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn random_payloads_allocate_within_the_bound(payload in vec(any::<u8>(), 0..512)) {
        let (largest, _) = largest_allocation(&Decoder::default(), &framed(&payload));
        prop_assert!(largest < bound(payload.len()), "allocated {} bytes", largest);
    }
}
