//! Exit codes: what each command's outcome means to a shell or a scheduler.
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use vidfeat::{Outcome, RunReport};

pub const EXIT_CODES: &str = "Exit codes:
  0  every video succeeded
  1  the run could not start or stopped (bad arguments or settings, unreadable list, model or output problem)
  2  some videos failed (see OUT/failures.jsonl); the rest were written
  3  no video succeeded (or there was none)";

pub const SETTINGS: &str = "Settings: every option can also come from a settings file (--config, else ./vidfeat.toml: top-level
keys for every subcommand, or a [run] / [work] / [pca.fit] ... table) and from VIDFEAT_<OPTION>
environment variables (VIDFEAT_BATCH_SIZE=64). Flags override the file; the environment overrides
both. --print-config shows the effective settings and where each came from.";

/// 0 all videos ok, 2 some failed, 3 none ok.
pub fn of_outcome(o: Outcome) -> ExitCode {
    ExitCode::from(match o {
        Outcome::AllOk => 0,
        Outcome::SomeFailed => 2,
        Outcome::NoneOk => 3,
    })
}

/// Prints what a run (or extract) did, and its exit code.
pub fn print_run_report(r: RunReport, json_out: bool, out: &Path) -> Result<ExitCode> {
    vidfeat::telemetry::finish_display();
    let s = &r.summary;
    if json_out {
        println!("{}", serde_json::to_string(s)?);
    } else {
        let n = |k: &str| s[k].as_u64().unwrap_or(0);
        println!(
            "{} ok, {} failed, {} ({} s of video) in {:.1} s ({:.1} rows/s)",
            vidfeat::telemetry::count(n("videos_ok"), "video"),
            n("videos_failed"),
            vidfeat::telemetry::count(n("rows"), "row"),
            s["seconds_of_video"],
            s["wall_time_s"].as_f64().unwrap_or(0.0),
            s["throughput"]["frames_per_s"].as_f64().unwrap_or(0.0)
        );
        println!("output: {}", out.display());
        if s["videos_failed"].as_u64().unwrap_or(0) > 0 {
            println!("failures: {}", out.join("failures.jsonl").display());
        }
    }
    Ok(of_outcome(r.outcome))
}
