//! Fuzzing the parsers that clients, guests and configuration files feed.
//!
//! Two kinds of test share one seedable generator ([`Gen`], xorshift64*, no
//! dependency):
//!
//! - properties ([`check`]): generated inputs for the parsers a client feeds
//!   (the framing watcher, the request path and headers behind the environ,
//!   the forwarding headers), each checked for a property (a well-framed
//!   pipeline gets the verdicts it should, a path never keeps a `..`
//!   segment, an environ never has a key twice...) and for not panicking.
//!   They live beside each parser's own tests; `WASGI_FUZZ_CASES` cases each
//!   (2,000 by default).
//! - mutation fuzzing ([`run`], a `fuzz_target` module beside each format's
//!   parser): seeds of each format a guest or an administrator writes (the
//!   guest's frames, `wasgi.toml`, policy files, Apache configuration text)
//!   mutated at random (bits flipped, the format's punctuation inserted,
//!   ranges cut, doubled or spliced), for `WASGI_FUZZ_SECONDS` each (2 by
//!   default); any panic is a failure, and the input is saved under
//!   `target/fuzz-crashes/`.
//!
//! Both stay short inside `cargo test` (CI); longer runs, and a replay:
//!
//! ```sh
//! WASGI_FUZZ_CASES=500000 WASGI_FUZZ_SECONDS=600 cargo test -p wasgi --lib fuzz -- --nocapture
//! WASGI_FUZZ_SEED=N WASGI_FUZZ_CASES=1 cargo test -p wasgi --lib NAME
//! ```
//!
//! An input a run finds becomes a regression test next to its parser.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// A small, seedable generator (xorshift64*): reproducible cases without a
/// dependency.
pub struct Gen(u64);

impl Gen {
    pub fn new(seed: u64) -> Gen {
        Gen(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (0 when n is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Bytes of `alphabet`, as many as a number in `lengths`.
    pub fn bytes_of(&mut self, alphabet: &[u8], lengths: std::ops::Range<usize>) -> Vec<u8> {
        let len = lengths.start + self.below(lengths.len().max(1));
        (0..len).map(|_| *self.pick(alphabet)).collect()
    }
}

/// Runs `property` on `WASGI_FUZZ_CASES` generators derived from one seed
/// (`WASGI_FUZZ_SEED`, else the clock); a failing case's seed is printed.
pub fn check(name: &str, property: impl Fn(&mut Gen) + std::panic::RefUnwindSafe) {
    let cases: u64 = std::env::var("WASGI_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000);
    let seed: u64 = std::env::var("WASGI_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    });
    for case in 0..cases {
        let case_seed = seed.wrapping_add(case.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let result = std::panic::catch_unwind(|| property(&mut Gen::new(case_seed)));
        if let Err(panic) = result {
            eprintln!("{name}: case {case} failed; replay it with WASGI_FUZZ_SEED={case_seed} WASGI_FUZZ_CASES=1");
            std::panic::resume_unwind(panic);
        }
    }
}

/// Bytes that mean something in one of the formats fuzzed here.
const INTERESTING: &[u8] = b"\0\r\n\t \"'[]{}=<>#\\/:;,.*%?&+-0129azAZ\x7f\x80\xc3\xff";

/// One mutated input from `seeds`.
pub(crate) fn mutate(g: &mut Gen, seeds: &[&[u8]]) -> Vec<u8> {
    let mut data = seeds[g.below(seeds.len())].to_vec();
    for _ in 0..1 + g.below(8) {
        let len = data.len();
        match g.below(8) {
            0 if len > 0 => {
                let i = g.below(len);
                data[i] ^= 1 << g.below(8);
            }
            1 if len > 0 => {
                let i = g.below(len);
                data[i] = INTERESTING[g.below(INTERESTING.len())];
            }
            2 => {
                let i = g.below(len + 1);
                let n = 1 + g.below(4);
                for _ in 0..n {
                    data.insert(i, INTERESTING[g.below(INTERESTING.len())]);
                }
            }
            3 if len > 0 => {
                let start = g.below(len);
                let end = (start + 1 + g.below(16)).min(len);
                data.drain(start..end);
            }
            4 if len > 0 => {
                let start = g.below(len);
                let end = (start + 1 + g.below(64)).min(len);
                let copy = data[start..end].to_vec();
                let at = g.below(len + 1);
                data.splice(at..at, copy);
            }
            5 => {
                let other = seeds[g.below(seeds.len())];
                if !other.is_empty() {
                    let start = g.below(other.len());
                    let end = (start + 1 + g.below(128)).min(other.len());
                    let at = g.below(len + 1);
                    data.splice(at..at, other[start..end].iter().copied());
                }
            }
            6 => data.truncate(g.below(len + 1)),
            _ => {
                // A random byte anywhere, including the ones no seed has.
                let at = g.below(len + 1);
                data.insert(at, g.next() as u8);
            }
        }
    }
    data
}

/// Runs `target` on mutations of `seeds` (and on the seeds themselves) for
/// the configured time; panics with the saved input if the target panics.
pub(crate) fn run(name: &str, seeds: &[&[u8]], target: impl Fn(&[u8])) {
    let seconds: f64 = std::env::var("WASGI_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let seed: u64 = std::env::var("WASGI_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    });
    let mut g = Gen::new(seed);
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut runs = 0u64;
    let mut try_one = |input: &[u8]| {
        runs += 1;
        if catch_unwind(AssertUnwindSafe(|| target(input))).is_err() {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-crashes");
            let _ = std::fs::create_dir_all(&dir);
            let file = dir.join(format!("{name}-{seed}-{runs}"));
            let _ = std::fs::write(&file, input);
            panic!("fuzz target {name} panicked on {} (WASGI_FUZZ_SEED={seed}): {:?}", file.display(), String::from_utf8_lossy(input));
        }
    };
    for s in seeds {
        try_one(s);
    }
    while Instant::now() < deadline {
        let input = mutate(&mut g, seeds);
        try_one(&input);
    }
    eprintln!("fuzz {name}: {runs} inputs in {seconds}s (WASGI_FUZZ_SEED={seed})");
}

#[cfg(test)]
mod targets {
    use super::*;

    #[test]
    fn mutations_are_replayable_from_the_seed() {
        let seeds: &[&[u8]] = &[b"abc", b"[[x]]"];
        let a: Vec<_> = (0..50).scan(Gen::new(7), |r, _| Some(mutate(r, seeds))).collect();
        let b: Vec<_> = (0..50).scan(Gen::new(7), |r, _| Some(mutate(r, seeds))).collect();
        assert_eq!(a, b);
        assert!(a.iter().any(|m| m.as_slice() != b"abc" && m.as_slice() != b"[[x]]"));
    }
}
