//! Per-call rate-limit cost: one GCRA check for one caller hammering a tool, and for checks
//! spread over 10,000 and 1,000,000 tracked callers.
//!
//! Target (issue "Side-by-side performance"): ≤ 200 ns per check. Memory per tracked caller is
//! measured by the `limiter_memory` bench.
//!
//! Run with `cargo bench -p mcp-gatekeeper --bench limits`.

use std::{hint::black_box, time::Duration};

use criterion::{Criterion, criterion_group, criterion_main};
use mcp_gatekeeper::{__bench::Limiter, CallerId, Rate};

const CALLERS: usize = 1_000_000;

/// The highest representable daily rate: the benchmark never exhausts it, so every check
/// takes the "accepted" path, which is the common one.
fn limiter() -> Limiter {
    Limiter::new(Rate {
        calls: u32::MAX,
        per: Duration::from_secs(24 * 60 * 60),
    })
    .expect("u32::MAX calls a day is a representable rate")
}

/// A caller as `Principal::caller_id` computes it, from a key like `Principal::caller_key`.
fn caller(i: usize) -> CallerId {
    CallerId::of(&format!("jwt:user-{i:07}"))
}

fn bench_rate_limit(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate_limit");

    let one = limiter();
    let alice = caller(123);
    group.bench_function("1_caller", |b| {
        b.iter(|| one.check(black_box(alice)));
    });
    assert!(one.check(alice).is_ok(), "the rate was never exceeded");

    // 10,000 callers fit in cache; 1,000,000 do not, as in a large deployment.
    for n in [10_000, CALLERS] {
        let limiter = limiter();
        let callers: Vec<CallerId> = (0..n).map(caller).collect();
        for &key in &callers {
            assert!(limiter.check(key).is_ok());
        }
        let mut i = 0;
        group.bench_function(format!("{n}_callers"), |b| {
            b.iter(|| {
                i = (i + 1) % n;
                limiter.check(black_box(callers[i]))
            });
        });
        assert!(
            limiter.check(callers[0]).is_ok(),
            "the rate was never exceeded"
        );
    }

    group.finish();
}

criterion_group!(benches, bench_rate_limit);
criterion_main!(benches);
