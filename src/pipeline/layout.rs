//! How a run's cores are used: decoders and the network's threads. Policy over resolved
//! settings (a device name and counts), not flags.

/// `--decode-workers` / `--decode-threads` with 0 resolved: one worker per core, and one
/// thread each when several run. Several single-threaded decoders beat one frame-threaded
/// decoder: no frame-thread synchronisation and no oversubscription (decode_vs_cli bench).
pub fn decode_layout(workers: usize, threads: usize) -> (usize, usize) {
    let workers = match workers {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        w => w,
    };
    (workers, if threads == 0 && workers > 1 { 1 } else { threads })
}

/// Cores split between decoding and a network on the CPU (run, work): `--torch-threads 0` is
/// half the cores (rounded up), `--decode-workers 0` the rest, one single-threaded decoder
/// each. On 2 cores that is 1 + 1, which ran 32.0-33.9 frames/s end to end against 26-29.5
/// with 2 network threads and the decoders competing for the same cores, at 0.95 of the
/// network alone on its one core (docs/BENCHMARKS.md). The network's thread count does not
/// follow --decode-workers: it changes the last bits of the features (MKL's reduction order),
/// and decoding settings must not. With CUDA the network needs no cores: one decoder per core.
/// Returns (decode workers, torch threads).
pub fn cpu_split(device: &str, decode_workers: usize, torch_threads: usize) -> (usize, usize) {
    let cpu = vidfeat_features::resolve_device(device).map_or(true, |(d, _)| !d.is_cuda());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if !cpu || cores < 2 {
        return (decode_workers, torch_threads);
    }
    let torch = if torch_threads == 0 { cores.div_ceil(2) } else { torch_threads };
    let workers = if decode_workers == 0 { cores.saturating_sub(torch).max(1) } else { decode_workers };
    (workers, torch)
}
