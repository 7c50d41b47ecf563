//! Time the planner alone, without Python: `cargo run --release --example plan_timing [count]`
//! (default 10M lengths).
//! (The side-by-side benchmark is `benches/bench_pack.py`; this isolates the core.)

use seqpack_core::pack::{plan, PlanOptions, Strategy};
use std::time::Instant;

fn main() {
    // Deterministic lognormal-ish lengths from a xorshift generator (no rand dependency here).
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut uniform = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let count: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000_000);
    let lengths: Vec<u32> = (0..count)
        .map(|_| {
            let normal = (-2.0 * uniform().max(1e-12).ln()).sqrt() * (std::f64::consts::TAU * uniform()).cos();
            ((350f64.ln() + normal).exp().clamp(8.0, 4096.0)) as u32
        })
        .collect();
    for strategy in [Strategy::BestFitDecreasing, Strategy::FirstFitDecreasing, Strategy::Sequential, Strategy::Wrapped]
    {
        let mut options = PlanOptions::new(4096);
        options.strategy = strategy;
        let start = Instant::now();
        let planned = plan(&lengths, &options).unwrap();
        println!(
            "{:>10}: {:>6.1} ms, {} rows",
            strategy.name(),
            start.elapsed().as_secs_f64() * 1e3,
            planned.num_rows()
        );
    }
}
