//! Memory per tracked caller of one tool's rate limiter.
//!
//! Inserts 1,000,000 callers into a fresh limiter and reports the growth of the resident set
//! (`VmRSS`, the same figure as the second field of `/proc/self/statm`, read in kB), divided
//! by the number of callers. Limiters are keyed by `CallerId` (a 64-bit hash), so the limiter
//! keeps no key string: the figure is what an idle tracked caller costs.
//!
//! Target (issue "Side-by-side performance"): ≤ 200 bytes per tracked caller.
//!
//! Run with `cargo bench -p mcp-gatekeeper --bench limiter_memory` (Linux only).

use std::time::Duration;

use mcp_gatekeeper::{__bench::Limiter, CallerId, Rate};

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

    let ids: Vec<CallerId> = (0..callers)
        .map(|i| CallerId::of(&format!("jwt:user-{i:07}")))
        .collect();
    let start = rss_bytes();
    for &id in &ids {
        assert!(limiter.check(id).is_ok());
    }
    let state = rss_bytes().saturating_sub(start);
    std::hint::black_box(&limiter);
    if !bench {
        return;
    }
    println!(
        "limiter memory: {} bytes per tracked caller (RSS growth over {callers} callers)",
        per_caller(state, callers)
    );
}
