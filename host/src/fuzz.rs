//! Property tests for the parsers a client feeds (the framing watcher, the
//! request path and headers behind the environ, the forwarding headers):
//! many generated inputs per `cargo test`, each checked for a property (a
//! well-framed pipeline gets the verdicts it should, a path never keeps a
//! `..` segment, an environ never has a key twice...) and for not panicking
//! on arbitrary bytes. The properties live beside each parser's own tests.
//!
//! A run is bounded (`WASGI_FUZZ_CASES`, 2,000 cases per property by
//! default, a few seconds) and repeatable: the seed is printed on failure,
//! and `WASGI_FUZZ_SEED=N` replays it. A longer run:
//! `WASGI_FUZZ_CASES=500000 cargo test -p wasgi --lib fuzz`. An input a
//! run finds becomes a regression test next to the parser's own tests.

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

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
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
