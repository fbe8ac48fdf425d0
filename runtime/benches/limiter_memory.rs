//! Memory per tracked caller of one tool's rate limiter.
//!
//! Inserts 1,000,000 callers into a fresh limiter and reports the growth of the resident set
//! (`VmRSS`, the same figure as the second field of `/proc/self/statm`, read in kB), divided
//! by the number of callers. The key strings are counted separately: in a server they are the
//! principals' `caller_key`s, which the limiter shares (`Arc<str>`) while the principal is
//! alive and keeps alone once it is gone, so the total is what an idle caller costs.
//!
//! Target (issue "Side-by-side performance"): ≤ 200 bytes per tracked caller.
//!
//! Run with `cargo bench -p mcp-gatekeeper --bench limiter_memory` (Linux only).

use std::{sync::Arc, time::Duration};

use mcp_gatekeeper::{__bench::Limiter, Rate};

const CALLERS: usize = 1_000_000;

/// The resident set size of this process, in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    let kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse().ok())
        .expect("a VmRSS line in /proc/self/status");
    kb * 1024
}

fn per_caller(bytes: u64, callers: usize) -> u64 {
    bytes.div_ceil(callers as u64)
}

fn main() {
    // `cargo bench` passes `--bench`; without it (`cargo test --benches`) this is a smoke test.
    let bench = std::env::args().any(|a| a == "--bench");
    let callers = if bench { CALLERS } else { 10_000 };

    let limiter = Limiter::new(Rate {
        calls: 100,
        per: Duration::from_secs(60),
    })
    .expect("a representable rate");

    // The vector of key pointers is allocated and touched before the first reading, so that
    // only the key strings themselves count as "keys".
    let placeholder: Arc<str> = Arc::from("");
    let mut keys = vec![placeholder; callers];
    let start = rss_bytes();
    for (i, key) in keys.iter_mut().enumerate() {
        *key = format!("jwt:user-{i:07}").into();
    }
    let after_keys = rss_bytes();
    for key in &keys {
        assert!(limiter.check(key).is_ok());
    }
    let after_limiter = rss_bytes();
    // The limiter now holds the only reference to each key, as it does for a caller whose
    // principal is gone.
    drop(keys);
    std::hint::black_box(&limiter);

    let keys = after_keys.saturating_sub(start);
    let state = after_limiter.saturating_sub(after_keys);
    if !bench {
        return;
    }
    println!(
        "limiter memory: {} bytes per tracked caller, key string included \
         ({} limiter state + {} key `Arc<str>` such as \"jwt:user-0000123\"; \
         RSS growth over {callers} callers)",
        per_caller(keys + state, callers),
        per_caller(state, callers),
        per_caller(keys, callers),
    );
    println!(
        "limiter memory: {} bytes per tracked caller, limiter state only (key strings not counted)",
        per_caller(state, callers)
    );
}
