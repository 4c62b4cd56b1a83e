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
/// A network that outweighs decoding many times over (`heavy`: a clip model such as I3D, 27
/// GFLOPs a row) gets every core and one decoder: on 2 cores I3D ran 1.34 clips/s so against
/// 0.79 with one network thread (docs/BENCHMARKS.md). Returns (decode workers, torch threads).
pub fn cpu_split(device: &str, decode_workers: usize, torch_threads: usize, heavy: bool) -> (usize, usize) {
    let cpu = vidfeat_features::resolve_device(device).map_or(true, |(d, _)| !d.is_cuda());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if !cpu || cores < 2 {
        return (decode_workers, torch_threads);
    }
    let torch = match (torch_threads, heavy) {
        (0, true) => cores,
        (0, false) => cores.div_ceil(2),
        (n, _) => n,
    };
    let workers = if decode_workers == 0 { cores.saturating_sub(torch).max(1) } else { decode_workers };
    (workers, torch)
}

/// Whether a run's networks outweigh decoding many times over (see [`cpu_split`]): any of
/// them takes clips.
pub fn network_heavy(sidecars: &[vidfeat_features::Sidecar]) -> bool {
    sidecars.iter().any(|s| s.clip.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heavy_network_gets_every_core_and_flags_win() {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        if cores < 2 {
            return;
        }
        assert_eq!(cpu_split("cpu", 0, 0, false), (cores - cores.div_ceil(2), cores.div_ceil(2)));
        assert_eq!(cpu_split("cpu", 0, 0, true), (1, cores));
        // Given counts are kept whatever the model.
        assert_eq!(cpu_split("cpu", 3, 1, true), (3, 1));
        assert_eq!(cpu_split("cpu", 0, 1, true), (cores - 1, 1));
    }
}
