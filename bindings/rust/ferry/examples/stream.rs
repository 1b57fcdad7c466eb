//! Streams a synthetic transformer (N blocks of attention + MLP weights) through a VRAM
//! budget smaller than the model, pass after pass, and prints ferry's stats.
//!
//!     cargo run --release --example stream -- [--blocks 24] [--block-kib 512]
//!         [--budget-pct 40] [--passes 5] [--h2d-gbps 25] [--backend sim|cuda|auto]
//!
//! On the sim backend (the default) each pass also checks one byte per tensor on the
//! "device", which on sim is host memory.

use ferry::{Backend, DType, Runtime, TensorOptions};
use std::process::ExitCode;
use std::time::Instant;

struct Args {
    blocks: usize,
    block_kib: u64,
    budget_pct: u64,
    passes: usize,
    h2d_gbps: f64,
    backend: Backend,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        blocks: 24,
        block_kib: 512,
        budget_pct: 40,
        passes: 5,
        h2d_gbps: 25.0,
        backend: Backend::Sim,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let bad = |e: &dyn std::fmt::Display| format!("{flag}: {e}");
        match flag.as_str() {
            "--blocks" => args.blocks = value()?.parse().map_err(|e| bad(&e))?,
            "--block-kib" => args.block_kib = value()?.parse().map_err(|e| bad(&e))?,
            "--budget-pct" => args.budget_pct = value()?.parse().map_err(|e| bad(&e))?,
            "--passes" => args.passes = value()?.parse().map_err(|e| bad(&e))?,
            "--h2d-gbps" => args.h2d_gbps = value()?.parse().map_err(|e| bad(&e))?,
            "--backend" => {
                args.backend = match value()?.as_str() {
                    "sim" => Backend::Sim,
                    "cuda" => Backend::Cuda,
                    "auto" => Backend::Auto,
                    other => return Err(format!("--backend: unknown backend {other:?}")),
                }
            }
            "-h" | "--help" => {
                return Err(
                    "usage: stream [--blocks N] [--block-kib K] [--budget-pct P] \
                            [--passes N] [--h2d-gbps G] [--backend sim|cuda|auto]"
                        .to_string(),
                )
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if args.blocks == 0 || args.block_kib < 4 || args.passes == 0 {
        return Err("--blocks and --passes must be > 0, --block-kib >= 4".to_string());
    }
    Ok(args)
}

fn byte_at(block: usize, tensor: usize, i: u64) -> u8 {
    (i as usize)
        .wrapping_mul(131)
        .wrapping_add(block * 7 + tensor * 3) as u8
}

fn run(args: &Args) -> ferry::Result<()> {
    // Per block: qkv (3/8), out proj (1/8), mlp (1/2) of the block's bytes, in bf16.
    let block_bytes = args.block_kib * 1024;
    let parts = [
        ("attn.qkv", block_bytes * 3 / 8),
        ("attn.out", block_bytes / 8),
    ];
    let mlp = block_bytes - parts.iter().map(|p| p.1).sum::<u64>();
    let model_bytes = block_bytes * args.blocks as u64;
    let budget = model_bytes * args.budget_pct / 100;

    let rt = Runtime::builder()
        .backend(args.backend)
        .vram_budget(budget)
        .name("stream-example")
        .sim_h2d_gbps(args.h2d_gbps)
        .sim_latency_us(10.0)
        .build()?;
    println!(
        "ferry {} on {:?}: {} blocks x {} KiB = {:.1} MiB model, budget {:.1} MiB",
        ferry::version(),
        rt.backend(),
        args.blocks,
        args.block_kib,
        model_bytes as f64 / (1 << 20) as f64,
        budget as f64 / (1 << 20) as f64
    );

    let mut blocks = Vec::new();
    for b in 0..args.blocks {
        let group = rt.define_group(&format!("transformer_blocks.{b}"))?;
        let mut tensors = Vec::new();
        for (name, bytes) in parts.iter().copied().chain([("mlp", mlp)]) {
            let options = TensorOptions::new()
                .dtype(DType::BF16)
                .shape(&[(bytes / 2) as i64]);
            tensors.push(rt.define_tensor_with(group, name, bytes, &options)?);
        }
        blocks.push((group, tensors));
    }
    rt.declare_schedule(&blocks.iter().map(|b| b.0).collect::<Vec<_>>())?;

    let t0 = Instant::now();
    rt.plan()?;
    let planned = t0.elapsed();
    for (b, (_, tensors)) in blocks.iter().enumerate() {
        for (t, &tensor) in tensors.iter().enumerate() {
            let mut host = rt.host_bytes_mut(tensor)?;
            for (i, byte) in host.iter_mut().enumerate() {
                *byte = byte_at(b, t, i as u64);
            }
        }
    }
    rt.seal()?;
    let resident = blocks
        .iter()
        .filter(|b| rt.group_info(b.0).is_ok_and(|i| i.resident))
        .count();
    println!(
        "planned in {:.1} ms, loaded and sealed in {:.1} ms; {resident} of {} blocks resident",
        planned.as_secs_f64() * 1e3,
        t0.elapsed().as_secs_f64() * 1e3,
        args.blocks
    );

    let check = rt.backend() == Backend::Sim;
    for pass in 0..args.passes {
        let start = Instant::now();
        for (b, (group, tensors)) in blocks.iter().enumerate() {
            let held = rt.acquire(*group)?;
            if check {
                for (t, &tensor) in tensors.iter().enumerate() {
                    let device = held.sim_device_bytes(tensor)?;
                    let i = (b * 977 + t * 131) % device.len();
                    assert_eq!(device[i], byte_at(b, t, i as u64), "block {b} tensor {t}");
                }
            }
        }
        println!("pass {pass}: {:.2} ms", start.elapsed().as_secs_f64() * 1e3);
    }

    let s = rt.stats()?;
    println!("\nstats:");
    println!(
        "  acquires {} = resident hits {} + hits {} + misses {}",
        s.acquires, s.resident_hits, s.hits, s.misses
    );
    println!(
        "  prefetches issued {}, used {}, wasted {}",
        s.prefetches_issued, s.prefetches_used, s.prefetches_wasted
    );
    println!(
        "  bytes H2D {:.1} MiB, D2H {} (frozen weights are never copied back)",
        s.bytes_h2d as f64 / (1 << 20) as f64,
        s.bytes_d2h
    );
    println!("  onloads {}, passes {}", s.onloads, s.passes);
    println!(
        "  streamed per pass {:.1} MiB",
        s.streamed_bytes_per_pass as f64 / (1 << 20) as f64
    );
    println!(
        "  slab {:.1} MiB (resident {:.1}, streaming {:.1} in {} slots / {} size classes)",
        s.slab_bytes as f64 / (1 << 20) as f64,
        s.slab_resident_bytes as f64 / (1 << 20) as f64,
        s.slab_streaming_bytes as f64 / (1 << 20) as f64,
        s.streaming_slots,
        s.size_classes
    );
    println!(
        "  pinned host {:.1} MiB (model {:.1} MiB)",
        s.host_pinned_bytes as f64 / (1 << 20) as f64,
        s.model_bytes as f64 / (1 << 20) as f64
    );
    rt.close()
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
