//! The `vidfeat` binary: parse the command line (settings from vidfeat.toml, flags and
//! VIDFEAT_* variables), run the subcommand, map its outcome to an exit code. The command line
//! is in `cli/`; the work is in the library (`vidfeat::pipeline`, `vidfeat::outputs`).
use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    // Deterministic CPU features: MKL and OpenMP may otherwise use fewer threads when the
    // machine is busy, which changes the order of float sums and so the last bits of a
    // feature (found by the kill -9 test under load). Set before libtorch first runs.
    for (k, v) in [("MKL_DYNAMIC", "FALSE"), ("OMP_DYNAMIC", "FALSE")] {
        if std::env::var_os(k).is_none() {
            std::env::set_var(k, v);
        }
    }
    let cli = match cli::parse(std::env::args_os().collect()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    vidfeat::telemetry::init_logging(cli.log_format);
    // Long-running commands show progress; the display stops (bars cleared, a closing line
    // logged) before a summary is printed, or here.
    if cli::long_running(&cli.cmd) {
        vidfeat::telemetry::start_display(cli.progress, std::time::Duration::from_secs(cli.progress_interval));
    }
    let r = cli::exec(cli.cmd);
    vidfeat::telemetry::finish_display();
    match r {
        Ok(c) => c,
        // `vidfeat inspect ... | head` is not an error.
        Err(e) if e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::from(1)
        }
    }
}
