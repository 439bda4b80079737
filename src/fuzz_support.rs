//! What the property tests over upstream parsers share (`pypi::fuzz`, `hex::fuzz`): a counting
//! allocator that measures a closure's peak heap use, the input strategies (arbitrary bytes,
//! fragment soup, mutated seeds) and the test configuration.
//!
//! The allocator is installed for the library's unit-test binary only (this module is
//! `#[cfg(test)]`): the server and the integration tests use the system allocator unchanged.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::Config;

/// Counts the heap bytes of the thread that asked for it, only while [`peak_heap`] runs; every
/// other allocation goes straight to the system allocator.
struct Counting;

// Const-initialized `Cell`s of plain integers: reading them never allocates nor registers a
// destructor, so the allocator can touch them without recursing into itself.
thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static CURRENT: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    // `try_with`: a thread being torn down may free memory after its locals are gone.
    let _ = TRACKING.try_with(|tracking| {
        if tracking.get() {
            let now = CURRENT.get() + delta;
            CURRENT.set(now);
            if now > PEAK.get() {
                PEAK.set(now);
            }
        }
    });
}

// SAFETY: every call is forwarded unchanged to `System`; the bookkeeping neither allocates nor
// touches the memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            note(layout.size() as isize);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            note(layout.size() as isize);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        note(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            note(new_size as isize - layout.size() as isize);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result with the most heap (in bytes) that was live at once on this
/// thread while it ran, counting only what `f` allocated (its result included). Tests run on
/// threads of their own, so parallel tests do not disturb the count.
pub fn peak_heap<R>(f: impl FnOnce() -> R) -> (R, usize) {
    /// Stops counting even when `f` panics, so a failing case does not skew the next one.
    struct Stop;
    impl Drop for Stop {
        fn drop(&mut self) {
            TRACKING.set(false);
        }
    }
    CURRENT.set(0);
    PEAK.set(0);
    TRACKING.set(true);
    let stop = Stop;
    let result = f();
    drop(stop);
    (result, PEAK.get().max(0) as usize)
}

/// A property-test input. Printed as a byte-string literal (not proptest's list of numbers), so a
/// minimal failing input can be pasted into a regression test as it is.
#[derive(Clone, PartialEq, Eq)]
pub struct Input(pub Vec<u8>);

impl fmt::Debug for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b\"{}\" ({} bytes)", self.0.escape_ascii(), self.0.len())
    }
}

/// The configuration of a fuzz property: `default_cases` unless `PROPTEST_CASES` asks for another
/// number (the long run), and no `proptest-regressions/` files: a failure found is kept as a named
/// regression test instead.
pub fn config(default_cases: u32) -> Config {
    let mut config = Config {
        failure_persistence: None,
        ..Config::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default_cases;
    }
    config
}

/// The pieces of one input format that mutations insert: whole fragments (a key with a value of
/// the wrong type, a tag, a huge number) and openers that are repeated to nest deeply.
pub struct Dictionary {
    pub fragments: &'static [&'static [u8]],
    pub openers: &'static [&'static [u8]],
    /// A text format: most inputs are made valid UTF-8 (invalid sequences become U+FFFD), else
    /// most would stop at the UTF-8 check and never reach the parser.
    pub text: bool,
}

/// The deepest nesting a mutation builds: past every recursion limit the parsers have (128 for
/// serde_json, 100 for prost), so both sides of each limit are tried.
const MAX_NESTING: usize = 400;

/// A run of bytes worth inserting: a fragment, an opener repeated, or a few random bytes.
fn insertion(dict: &'static Dictionary) -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        4 => prop::sample::select(dict.fragments).prop_map(<[u8]>::to_vec),
        1 => (prop::sample::select(dict.openers), 1..=MAX_NESTING)
            .prop_map(|(opener, depth)| opener.repeat(depth)),
        2 => prop::collection::vec(any::<u8>(), 1..8),
    ]
    .boxed()
}

/// Where in a collection of `len` items (`len > 0`) a position falls: positions are fractions of
/// the length (`at / 2^32`), so one mutation means the same place in inputs of any length, and a
/// shrinking position moves towards the start.
fn scale(at: u32, len: usize) -> usize {
    ((len as u64 * u64::from(at)) >> 32) as usize
}

/// One edit of an input. Positions are scaled to the input's length when applied.
#[derive(Clone, Debug)]
pub enum Mutation {
    /// XOR a byte with a non-zero mask.
    Flip {
        at: u32,
        mask: u8,
    },
    Set {
        at: u32,
        byte: u8,
    },
    Truncate {
        at: u32,
    },
    Delete {
        at: u32,
        len: u8,
    },
    Insert {
        at: u32,
        bytes: Vec<u8>,
    },
    /// Replace a range with a range of a seed (possibly another one).
    Splice {
        at: u32,
        len: u8,
        seed: u32,
        from: u32,
        from_len: u16,
    },
    /// Repeat a range: long arrays and many links out of one entry.
    Repeat {
        at: u32,
        len: u8,
        times: u8,
    },
}

fn mutation(dict: &'static Dictionary) -> BoxedStrategy<Mutation> {
    let at = any::<u32>;
    prop_oneof![
        3 => (at(), 1..=u8::MAX).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        2 => (at(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        1 => at().prop_map(|at| Mutation::Truncate { at }),
        2 => (at(), 1..=64u8).prop_map(|(at, len)| Mutation::Delete { at, len }),
        4 => (at(), insertion(dict)).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        2 => (at(), 0..=64u8, at(), at(), 1..=512u16).prop_map(|(at, len, seed, from, from_len)| {
            Mutation::Splice { at, len, seed, from, from_len }
        }),
        1 => (at(), 1..=64u8, 2..=100u8).prop_map(|(at, len, times)| Mutation::Repeat { at, len, times }),
    ]
    .boxed()
}

impl Mutation {
    fn apply(&self, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
        let len = input.len();
        // A point between bytes (0..=len), and a range of at most `n` bytes starting at one.
        let point = |at: &u32| scale(*at, len + 1);
        let range = |at: &u32, n: usize| {
            let start = point(at);
            start..(start + n).min(len)
        };
        match self {
            Self::Flip { at, mask } if len > 0 => input[scale(*at, len)] ^= mask,
            Self::Set { at, byte } if len > 0 => input[scale(*at, len)] = *byte,
            Self::Flip { .. } | Self::Set { .. } => {}
            Self::Truncate { at } => input.truncate(point(at)),
            Self::Delete { at, len } => {
                input.drain(range(at, usize::from(*len)));
            }
            Self::Insert { at, bytes } => {
                let at = point(at);
                input.splice(at..at, bytes.iter().copied());
            }
            Self::Splice {
                at,
                len,
                seed,
                from,
                from_len,
            } => {
                let donor = &seeds[scale(*seed, seeds.len())];
                let start = scale(*from, donor.len() + 1);
                let end = (start + usize::from(*from_len)).min(donor.len());
                input.splice(range(at, usize::from(*len)), donor[start..end].iter().copied());
            }
            Self::Repeat { at, len, times } => {
                let range = range(at, usize::from(*len));
                let copy = input[range.clone()].to_vec();
                let repeated = copy.repeat(usize::from(*times) - 1);
                input.splice(range.end..range.end, repeated);
            }
        }
    }
}

/// A seed with up to four mutations applied (none: the seed itself).
pub fn mutated(seeds: Arc<Vec<Vec<u8>>>, dict: &'static Dictionary) -> BoxedStrategy<Input> {
    assert!(!seeds.is_empty(), "mutations need at least one seed");
    (any::<u32>(), prop::collection::vec(mutation(dict), 0..=4))
        .prop_map(move |(seed, mutations)| {
            let mut input = seeds[scale(seed, seeds.len())].clone();
            for m in &mutations {
                m.apply(&mut input, &seeds);
            }
            Input(input)
        })
        .boxed()
}

/// Fragments and random bytes strung together: inputs that are in the format's vocabulary
/// without being derived from a seed.
pub fn soup(dict: &'static Dictionary) -> BoxedStrategy<Input> {
    prop::collection::vec(insertion(dict), 0..48)
        .prop_map(|parts| Input(parts.concat()))
        .boxed()
}

/// Anything at all.
pub fn arbitrary() -> BoxedStrategy<Input> {
    prop::collection::vec(any::<u8>(), 0..1024)
        .prop_map(Input)
        .boxed()
}

/// The three kinds of input, weighted towards mutated seeds (which get past the first checks).
pub fn inputs(seeds: Arc<Vec<Vec<u8>>>, dict: &'static Dictionary) -> BoxedStrategy<Input> {
    let inputs = prop_oneof![
        1 => arbitrary(),
        2 => soup(dict),
        6 => mutated(seeds, dict),
    ];
    if !dict.text {
        return inputs.boxed();
    }
    // One in eight keeps its bytes as they are, invalid UTF-8 included.
    (inputs, 0..8u8)
        .prop_map(|(input, keep)| match keep {
            0 => input,
            _ => Input(String::from_utf8_lossy(&input.0).into_owned().into_bytes()),
        })
        .boxed()
}

/// The files in `tests/fixtures/<dir>` whose names end in `.<ext>`, sorted by name; none when the
/// directory does not exist. Read at run time, so the tests pick up a corpus added later.
pub fn fixture_files(dir: &str, ext: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<(String, Vec<u8>)> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == ext))
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&path).unwrap();
            (name, bytes)
        })
        .collect();
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_heap_counts_this_threads_live_bytes() {
        let ((), peak) = peak_heap(|| {
            let a = vec![0u8; 10_000];
            drop(a);
            let b = vec![0u8; 4_000];
            drop(b);
        });
        assert!((10_000..11_000).contains(&peak), "{peak}");
        // The result is counted: it is live when the closure returns.
        let (kept, peak) = peak_heap(|| vec![1u8; 50_000]);
        assert!(peak >= 50_000, "{peak}");
        drop(kept);
        // Memory freed inside that was allocated before does not make the peak negative.
        let before = vec![0u8; 1 << 20];
        let ((), peak) = peak_heap(move || drop(before));
        assert_eq!(peak, 0);
    }

    #[test]
    fn mutations_stay_within_the_input() {
        let seeds = vec![b"0123456789".to_vec(), b"abc".to_vec()];
        let at = |n: u32| n * (u32::MAX / 10);
        let apply = |m: Mutation, input: &[u8]| {
            let mut input = input.to_vec();
            m.apply(&mut input, &seeds);
            input
        };
        assert_eq!(apply(Mutation::Truncate { at: at(3) }, b"0123456789"), b"012");
        assert_eq!(
            apply(Mutation::Delete { at: at(8), len: 50 }, b"0123456789"),
            b"01234567"
        );
        assert_eq!(
            apply(
                Mutation::Insert {
                    at: at(0),
                    bytes: b"xy".to_vec()
                },
                b"01"
            ),
            b"xy01"
        );
        assert_eq!(
            apply(
                Mutation::Repeat {
                    at: at(0),
                    len: 2,
                    times: 3
                },
                b"ab!"
            ),
            b"ababab!"
        );
        assert_eq!(
            apply(
                Mutation::Splice {
                    at: at(0),
                    len: 1,
                    seed: at(9),
                    from: at(0),
                    from_len: 2
                },
                b"0z"
            ),
            b"abz"
        );
        // Edits of an empty input neither panic nor invent bytes where there is no position.
        assert_eq!(apply(Mutation::Flip { at: at(5), mask: 1 }, b""), b"");
        assert_eq!(apply(Mutation::Set { at: at(5), byte: 1 }, b""), b"");
        assert_eq!(
            format!("{:?}", Input(b"a\"\x00".to_vec())),
            r#"b"a\"\x00" (3 bytes)"#
        );
    }
}
