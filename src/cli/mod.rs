//! The command line. Only this folder knows clap and exit codes: each subcommand's file holds
//! its arguments and the function that runs it (`exec`), which turns them into the library's
//! resolved settings and calls `vidfeat::pipeline` or `vidfeat::outputs`. `args.rs` holds the
//! argument groups several subcommands share, `settings.rs` the resolution of vidfeat.toml,
//! flags and VIDFEAT_* variables, `exit.rs` the exit codes.
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{CommandFactory, Parser, Subcommand};

use vidfeat::telemetry::{LogFormat, ProgressMode};

use exit::{EXIT_CODES, SETTINGS};

mod args;
mod cnn_bench;
#[cfg(feature = "ffmpeg")]
mod decode;
mod exit;
mod extract;
#[cfg(feature = "ffmpeg")]
mod frames;
mod inspect;
#[cfg(feature = "ffmpeg")]
mod pca;
mod plan;
mod report;
#[cfg(feature = "ffmpeg")]
mod run;
mod sample;
pub mod settings;
mod status;
mod verify;
#[cfg(feature = "ffmpeg")]
mod work;

#[derive(Parser)]
#[command(name = "vidfeat", version, about = "Video lists in, YouTube-8M-compatible TFRecords of CNN frame features out",
          after_help = format!("Example (from a checkout):\n  vidfeat run data-samples/samples.csv --vocab kinetics-400 --out out && vidfeat report out --out out/report.html\n\n{SETTINGS}\n\n{EXIT_CODES}"))]
pub struct Cli {
    /// Settings file (TOML; default: ./vidfeat.toml when it exists).
    #[arg(long, global = true, help_heading = "Global options")]
    pub config: Option<PathBuf>,
    /// Print the effective settings (a valid settings file, each value's source noted) and exit.
    #[arg(long, global = true, help_heading = "Global options")]
    pub print_config: bool,
    /// Progress display: auto (bars on a terminal, else a log line every --progress-interval),
    /// always (bars), never.
    #[arg(long, global = true, help_heading = "Global options", default_value = "auto", value_parser = PossibleValuesParser::new(ProgressMode::NAMES).map(|s| s.parse::<ProgressMode>().unwrap()))]
    pub progress: ProgressMode,
    /// Seconds between progress log lines when no bars are drawn (0: none).
    #[arg(long, global = true, help_heading = "Global options", default_value_t = 30)]
    pub progress_interval: u64,
    /// Log lines on stderr: text, or json (one object per line, for log collectors). Levels
    /// and modules filter with RUST_LOG (default info).
    #[arg(long, global = true, help_heading = "Global options", default_value = "text", value_parser = PossibleValuesParser::new(LogFormat::NAMES).map(|s| s.parse::<LogFormat>().unwrap()))]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Decode, extract features, reduce, quantize and write shards.
    #[cfg(feature = "ffmpeg")]
    #[command(after_help = "Examples (from a checkout):\n  vidfeat run data-samples/samples.csv --vocab kinetics-400 --out out\n  vidfeat run data-samples/kinetics-400_sample.csv --video-root data-samples/videos --vocab kinetics-400 --out kinetics\n\nThe Kinetics sample has one clip missing on purpose: the second run exits 2 and names it in kinetics/failures.jsonl.\nRun again after editing the list: shards whose inputs are unchanged are kept, the others rebuilt.\n\n".to_string() + EXIT_CODES)]
    Run(run::RunArgs),
    /// Decode and sample only, into a zstd frame cache for `vidfeat extract` (on a GPU node).
    #[cfg(feature = "ffmpeg")]
    #[command(after_help = "Example (from a checkout):\n  vidfeat decode data-samples/samples.csv --vocab kinetics-400 --cache frames\n  vidfeat extract --cache frames --out out\n\nOn a GPU node, give extract --device cuda (and --fp16).\nExit codes: 0 every video decoded; 1 could not start; 2 some videos failed (CACHE/failures.jsonl); 3 none decoded.")]
    Decode(decode::DecodeArgs),
    /// Features, PCA and shards from a frame cache made by `vidfeat decode` (no FFmpeg needed).
    #[command(after_help = "Example (from a checkout):\n  vidfeat decode data-samples/samples.csv --vocab kinetics-400 --cache frames\n  vidfeat extract --cache frames --out out\n\nOn a GPU node: vidfeat extract --cache frames --out out --device cuda --fp16\n\n".to_string() + EXIT_CODES)]
    Extract(extract::ExtractArgs),
    /// Write the frames a video is sampled to (PNG per row, or one raw rgb24 file) plus
    /// frames.json (per row: index, the row's time and the source frame's presentation time in
    /// the source's media timeline, the same from the origin, the source frame's number; and
    /// the window and origin), to check sampling.
    #[cfg(feature = "ffmpeg")]
    #[command(after_help = "Examples (from a checkout):\n  vidfeat frames data-samples/videos/mmaction2__demo.mp4 --out demo-frames\n  vidfeat frames data-samples/videos/imageio__cockatoo.mp4 --out cockatoo --size 224x224 --format rgb24 --start 2 --end 5\n\nExit codes: 0 done; 1 the video could not be decoded (its error kind is named) or written.")]
    Frames(frames::FramesArgs),
    /// Fit a PCA (streaming covariance over a bounded sample of frames).
    #[cfg(feature = "ffmpeg")]
    #[command(subcommand, after_help = "Example (from a checkout):\n  vidfeat pca fit data-samples/videos --out pca.npz --dims 16\n\nExit codes: 0 fitted; 1 could not.")]
    Pca(pca::PcaCmd),
    /// CNN-only throughput: frames/s of the model on synthetic frames at given batch sizes.
    #[command(name = "cnn-bench", after_help = "Example:\n  vidfeat cnn-bench --batch 8,32 --seconds 2\n\nOn a GPU node: vidfeat cnn-bench --batch 64,256 --device cuda --fp16\nPrints one JSON line per precision and batch size.\nExit codes: 0 done; 1 the model could not be loaded or run.")]
    CnnBench(cnn_bench::CnnBenchArgs),
    /// Resolve and validate lists without decoding: DIR/plan.jsonl (one task per line, with its
    /// shard), DIR/failures.jsonl, and a summary (rows, resolved, missing sources, invalid
    /// rows, unknown labels, counts by split and label).
    #[command(after_help = "Examples (from a checkout):\n  vidfeat plan data-samples/samples.csv --vocab kinetics-400 --shards 2 --out ds\n  vidfeat work --plan ds --worker-index 0 --num-workers 2\n  vidfeat work --plan ds --worker-index 1 --num-workers 2\n  vidfeat plan data-samples/kinetics-400_sample.csv --video-root data-samples/videos --vocab kinetics-400 --out check --dry-run --json\n\nThe dry run only validates (one clip of the Kinetics sample is missing on purpose: exit 2).\nExit codes: 0 all rows resolved; 2 some problems (listed in DIR/failures.jsonl); 1 with --strict and any problem, when the lists cannot be read, DIR holds another dataset, or no PCA could be fitted.")]
    Plan(plan::PlanArgs),
    /// Process the shards of a frozen plan: resumable, for Slurm arrays and Kubernetes Indexed Jobs.
    #[cfg(feature = "ffmpeg")]
    #[command(after_help = "Examples (from a checkout):\n  vidfeat plan data-samples/samples.csv --vocab kinetics-400 --shards 4 --out ds\n  vidfeat work --plan ds --worker-index 0 --num-workers 2\n  vidfeat work --plan ds --claim\n\n--claim takes any free shard (leases in ds/leases). In a Slurm array task or a Kubernetes Indexed Job,\n`vidfeat work --plan ds` takes its index from SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX.\nA killed worker resumes where it stopped (finished videos are in ds/journal); finished shards are skipped.\nA --claim worker keeps going while shards are left: it waits for shards other workers hold, takes over a\nlease whose heartbeat stopped (after --lease-ttl, or at once when its process is gone on this host), and\nleaves only when every shard is done or held by a worker whose heartbeat it has seen (that one finishes it).\nExit codes: 0 its shards done (a --claim worker: the whole plan done); 1 could not run (changed model/PCA/plan.jsonl,\na shard held by another worker with the same index); 2 done, some videos failed; 4 (--claim) the plan is not\ncomplete: live workers still hold shards.")]
    Work(work::WorkArgs),
    /// Shards done, in progress (lease age), pending, and failed videos of a plan's output.
    #[command(after_help = "Example (from a checkout):\n  vidfeat plan data-samples/samples.csv --vocab kinetics-400 --shards 2 --out ds\n  vidfeat status ds\n  vidfeat status ds --json\n\nExit codes: 0 read (whatever the progress); 1 not a plan folder.")]
    Status(status::StatusArgs),
    /// Check every record's CRCs and schema, and record counts per shard against summary.json.
    #[command(after_help = "Example (from a checkout):\n  vidfeat run data-samples/samples.csv --vocab kinetics-400 --out out\n  vidfeat verify out\n  vidfeat verify out/frame/train-00000-of-00001.tfrecord --json\n\nExit codes: 0 all good; 1 any problem (each named with its shard, and byte offset for corrupt records; stale or changed shards of a plan folder).")]
    Verify(verify::VerifyArgs),
    /// A stratified, reproducible sample of an output folder for quick trainer experiments.
    #[command(after_help = "Example (from a checkout):\n  vidfeat run data-samples/samples.csv --vocab kinetics-400 --out out\n  vidfeat sample --from out --out sample --per-class 1 --seed 1 --format npz\n  vidfeat sample --from out --out wds --per-class 1 --classes 'arm wrestling,flipping pancake' --format webdataset\n\nFormats: tfrecord (records copied: frame/ and video/ shards), npz (sample.npz: rgb float32 [rows, dims] dequantized, row_video, row_offsets, ids, labels [videos, max_labels] padded with -1, mean_rgb), webdataset (tar shards of {key}.rgb.npy + {key}.json). sample.json lists what was taken; vocabulary.csv goes along.\n\nExit codes: 0 written; 1 could not (no such classes, unreadable shards).")]
    Sample(sample::SampleArgs),
    /// Print the records of TFRecord files as JSON lines (ours or Google's YouTube-8M shards).
    #[command(after_help = "Example (from a checkout):\n  vidfeat run data-samples/samples.csv --vocab kinetics-400 --out out\n  vidfeat inspect out/frame/train-00000-of-00001.tfrecord --names\n\nExit codes: 0 every record read; 1 a file could not be opened, is not a TFRecord, or a record is corrupt.")]
    Inspect(inspect::InspectArgs),
    /// One self-contained HTML page about an output folder: counts, failures by kind, label /
    /// duration / rows histograms, throughput over time, and contact sheets of sampled frames.
    #[command(after_help = "Example (from a checkout):\n  vidfeat run data-samples/samples.csv --vocab kinetics-400 --out out\n  vidfeat report out --out out/report.html\n  vidfeat report out --out report.html --sheets 100 --thumbs 30 --json\n\nContact sheets decode the local sources of DIR/plan.jsonl again (run and plan folders), with the plan's sampling.\nExit codes: 0 written; 1 DIR is not an output folder, or the page could not be written.")]
    Report(report::ReportArgs),
}


/// Parses the command line after resolving settings from vidfeat.toml, flags and VIDFEAT_*
/// variables. `Err` is the exit code of a command line that ends here: usage errors exit 1
/// like every error that stops a run (clap's own default is 2, which here means "some videos
/// failed"); --help, --version and --print-config exit 0.
pub fn parse(argv: Vec<OsString>) -> Result<Cli, ExitCode> {
    let usage = |e: clap::Error| -> ExitCode {
        let _ = e.print();
        ExitCode::from(if e.use_stderr() { 1 } else { 0 })
    };
    let command: Vec<String> = argv.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let resolved = settings::resolve(&Cli::command(), argv, &|k| std::env::var(k).ok(), std::path::Path::new("vidfeat.toml")).map_err(usage)?;
    let cli = match Cli::try_parse_from(&resolved.argv) {
        Ok(c) => c,
        Err(e) => {
            if resolved.argv.iter().any(|a| a == "--print-config") {
                // Show what was resolved even when it does not parse, then why.
                print!("{}", settings::render(&resolved));
            }
            return Err(usage(e));
        }
    };
    if cli.print_config {
        print!("{}", settings::render(&resolved));
        return Err(ExitCode::SUCCESS);
    }
    let _ = INVOCATION.set((command, settings::to_json(&resolved)));
    Ok(cli)
}

/// The command line as given, and its effective settings (set once by [`parse`]).
static INVOCATION: std::sync::OnceLock<(Vec<String>, serde_json::Value)> = std::sync::OnceLock::new();

/// What made an output: this command and its settings, with vidfeat's and the libraries'
/// versions (see `vidfeat::pipeline::provenance`).
pub fn provenance() -> serde_json::Value {
    let (command, settings) = INVOCATION.get().cloned().unwrap_or_default();
    vidfeat::pipeline::provenance(command, settings)
}

/// Commands that show progress while they run.
pub fn long_running(cmd: &Cmd) -> bool {
    #[allow(unused_mut)]
    let mut long = matches!(cmd, Cmd::Extract(_));
    #[cfg(feature = "ffmpeg")]
    {
        long |= matches!(cmd, Cmd::Run(_) | Cmd::Decode(_) | Cmd::Work(_) | Cmd::Pca(_));
    }
    long
}

/// Runs a subcommand; its exit code, or the error that stopped it (exit 1).
pub fn exec(cmd: Cmd) -> Result<ExitCode> {
    match cmd {
        #[cfg(feature = "ffmpeg")]
        Cmd::Run(a) => run::exec(a),
        #[cfg(feature = "ffmpeg")]
        Cmd::Decode(a) => decode::exec(a),
        Cmd::Extract(a) => extract::exec(a),
        #[cfg(feature = "ffmpeg")]
        Cmd::Frames(a) => frames::exec(a),
        Cmd::CnnBench(a) => cnn_bench::exec(a),
        #[cfg(feature = "ffmpeg")]
        Cmd::Pca(pca::PcaCmd::Fit(a)) => pca::exec(a),
        Cmd::Inspect(a) => inspect::exec(a),
        Cmd::Plan(a) => plan::exec(a),
        #[cfg(feature = "ffmpeg")]
        Cmd::Work(a) => work::exec(a),
        Cmd::Status(a) => status::exec(a),
        Cmd::Verify(a) => verify::exec(a),
        Cmd::Sample(a) => sample::exec(a),
        Cmd::Report(a) => report::exec(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every subcommand's --help shows an example and its exit codes; every option of every
    /// subcommand can be set from the environment without clashing with another meaning.
    #[test]
    fn every_subcommand_help_has_an_example_and_exit_codes() {
        fn walk(c: &mut clap::Command, path: String, seen: &mut Vec<String>) {
            let help = c.render_long_help().to_string();
            assert!(help.contains("Example"), "`{path} --help` has no example");
            assert!(help.contains("Exit codes"), "`{path} --help` has no exit codes");
            seen.push(path.clone());
            for s in c.get_subcommands_mut() {
                if s.get_name() != "help" {
                    let p = format!("{path} {}", s.get_name());
                    walk(s, p, seen);
                }
            }
        }
        let mut seen = vec![];
        let mut c = Cli::command();
        c.build();
        walk(&mut c, "vidfeat".into(), &mut seen);
        for want in ["vidfeat report", "vidfeat status", "vidfeat verify", "vidfeat inspect", "vidfeat sample", "vidfeat plan", "vidfeat extract", "vidfeat cnn-bench"] {
            assert!(seen.contains(&want.to_string()), "{want} not checked: {seen:?}");
        }
        #[cfg(feature = "ffmpeg")]
        for want in ["vidfeat run", "vidfeat work", "vidfeat decode", "vidfeat frames", "vidfeat pca", "vidfeat pca fit"] {
            assert!(seen.contains(&want.to_string()), "{want} not checked: {seen:?}");
        }
    }

    /// Every option says what it does, and the options of every subcommand are listed apart
    /// from the global ones.
    #[test]
    fn every_option_has_a_description_and_global_options_their_own_heading() {
        fn walk(c: &clap::Command, path: String, n: &mut usize) {
            for a in c.get_arguments() {
                if matches!(a.get_action(), clap::ArgAction::Help | clap::ArgAction::HelpShort | clap::ArgAction::HelpLong | clap::ArgAction::Version) {
                    continue;
                }
                assert!(a.get_help().is_some_and(|h| !h.to_string().trim().is_empty()), "`{path}`: `{}` has no description", a.get_id());
                if a.is_global_set() {
                    assert_eq!(a.get_help_heading(), Some("Global options"), "`{path}`: global `{}`", a.get_id());
                } else {
                    assert_ne!(a.get_help_heading(), Some("Global options"), "`{path}`: `{}`", a.get_id());
                }
                *n += 1;
            }
            for s in c.get_subcommands().filter(|s| s.get_name() != "help") {
                walk(s, format!("{path} {}", s.get_name()), n);
            }
        }
        let mut c = Cli::command();
        c.build();
        let mut n = 0;
        walk(&c, "vidfeat".into(), &mut n);
        assert!(n > 100, "{n} options checked");
        let help = c.find_subcommand_mut("status").unwrap().render_help().to_string();
        assert!(help.contains("Global options:") && help.find("Global options:") > help.find("--lease-ttl"), "{help}");
    }

    #[test]
    fn command_names_for_print_config() {
        let name = |v: &[&str]| settings::resolve(&Cli::command(), v.iter().map(std::ffi::OsString::from).collect(), &|_| None, std::path::Path::new("/nonexistent/vidfeat.toml")).unwrap().command;
        assert_eq!(name(&["vidfeat", "--log-format=json", "status", "dir"]), "status");
        #[cfg(feature = "ffmpeg")]
        assert_eq!(name(&["vidfeat", "pca", "fit", "x", "--out", "p.npz"]), "pca fit");
    }
}
