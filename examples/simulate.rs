//! Runs the deterministic simulator over many seeds, for longer than the
//! tests do, and prints a progress line now and then.
//!
//! ```text
//! cargo run --release --features sim --example simulate -- [SEEDS] [STEPS] [FIRST_SEED]
//! ```
//!
//! Defaults: 1000 seeds of 3000 steps from seed 0. The first violation stops
//! the run and prints the command that replays its seed.

use std::process::ExitCode;
use std::time::Instant;

use hookraft::sim::{SimConfig, Simulation};

fn arg(k: usize, default: u64) -> u64 {
    match std::env::args().nth(k) {
        Some(a) => a.parse().unwrap_or_else(|_| panic!("argument {k} ({a}) is not a number")),
        None => default,
    }
}

fn main() -> ExitCode {
    let (seeds, steps, first) = (arg(1, 1000), arg(2, SimConfig::DEFAULT_STEPS), arg(3, 0));
    let started = Instant::now();
    let (mut total_steps, mut acked) = (0u64, 0u64);
    let every = (seeds / 20).max(1);
    for (k, seed) in (first..first + seeds).enumerate() {
        match Simulation::new(SimConfig::from_seed(seed).with_steps(steps)).run() {
            Ok(r) => {
                total_steps += r.steps;
                acked += r.acknowledged;
            }
            Err(v) => {
                eprintln!("{v}");
                return ExitCode::FAILURE;
            }
        }
        let done = k as u64 + 1;
        if done.is_multiple_of(every) || done == seeds {
            let secs = started.elapsed().as_secs_f64();
            println!(
                "{done}/{seeds} seeds, {total_steps} steps, {acked} proposals acknowledged, \
                 {secs:.1}s ({:.0} steps/s)",
                total_steps as f64 / secs.max(1e-9)
            );
        }
    }
    ExitCode::SUCCESS
}
