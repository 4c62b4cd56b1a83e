//! Every example that uses `data-samples/`, in the README and in every subcommand's `--help`,
//! runs as written from a checkout: each example's `vidfeat` lines in order, in a fresh folder
//! that has the checkout's `data-samples/`, with `vidfeat` on PATH. An example passes when each
//! line exits 0, or 2 where its input is a sample list with failures on purpose (the Kinetics
//! sample's missing clip, `with_failures.csv`). Lines of other programs (`python`, `make`) are
//! left out; examples without `data-samples/` need data a checkout does not have.
use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vidfeat"))
}

/// The command lines of an "Example:" section of a help page (indented lines up to a blank one).
fn help_examples(help: &str) -> Vec<Vec<String>> {
    let mut out = vec![];
    let mut lines = help.lines();
    while let Some(l) = lines.next() {
        if l.starts_with("Example") {
            let block: Vec<String> = lines.by_ref().take_while(|l| !l.trim().is_empty()).map(|l| l.trim().to_string()).collect();
            out.push(block);
        }
    }
    out
}

/// The ```sh blocks of the README.
fn readme_examples() -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(root().join("README.md")).unwrap();
    let mut out = vec![];
    let mut rest = text.as_str();
    while let Some(i) = rest.find("```sh\n") {
        rest = &rest[i + 6..];
        let end = rest.find("```").unwrap();
        out.push(rest[..end].lines().map(|l| l.trim().to_string()).collect());
        rest = &rest[end + 3..];
    }
    out
}

/// Every subcommand path: "", "run", ..., "pca fit".
fn commands() -> Vec<Vec<String>> {
    let help = |args: &[String]| String::from_utf8(Command::new(bin()).args(args).arg("--help").output().unwrap().stdout).unwrap();
    let mut out = vec![vec![]];
    let top = help(&[]);
    let subs: Vec<String> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    for s in subs {
        out.push(vec![s.clone()]);
        if s == "pca" {
            out.push(vec![s, "fit".into()]);
        }
    }
    out
}

/// A line without its trailing `# comment` (outside quotes).
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '\'' | '"' => quoted = !quoted,
            '#' if !quoted && (i == 0 || line[..i].ends_with(' ')) => return line[..i].trim_end(),
            _ => {}
        }
    }
    line
}

fn run_example(what: &str, lines: &[String]) {
    let d = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(root().join("data-samples"), d.path().join("data-samples")).unwrap();
    let path = format!("{}:{}", bin().parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
    for line in lines.iter().map(|l| strip_comment(l)).filter(|l| l.starts_with("vidfeat ")) {
        let o = Command::new("sh").arg("-c").arg(line).current_dir(d.path()).env("PATH", &path).env("RUST_LOG", "warn").output().unwrap();
        let failures_on_purpose = line.contains("kinetics-400_sample.csv") || line.contains("with_failures.csv");
        let ok = o.status.code() == Some(0) || (failures_on_purpose && o.status.code() == Some(2));
        assert!(ok, "{what}: `{line}` exited {:?}\n{}", o.status, String::from_utf8_lossy(&o.stderr));
    }
}

fn uses_samples(lines: &[String]) -> bool {
    lines.iter().any(|l| l.contains("data-samples/"))
}

#[test]
fn every_help_example_that_uses_the_samples_runs_as_written() {
    let mut ran = vec![];
    for cmd in commands() {
        let help = String::from_utf8(Command::new(bin()).args(&cmd).arg("--help").output().unwrap().stdout).unwrap();
        let examples = help_examples(&help);
        assert!(!examples.is_empty(), "`vidfeat {} --help` has no example", cmd.join(" "));
        for ex in examples.iter().filter(|e| uses_samples(e)) {
            run_example(&format!("vidfeat {} --help", cmd.join(" ")), ex);
            ran.push(cmd.join(" "));
        }
    }
    // The commands a new user starts with are among them.
    for want in ["", "run", "plan", "work", "status", "verify", "inspect", "frames", "pca fit", "decode", "extract", "sample", "report"] {
        assert!(ran.iter().any(|r| r == want), "`vidfeat {want} --help` has no example that runs from a checkout: {ran:?}");
    }
}

#[test]
fn every_readme_example_that_uses_the_samples_runs_as_written() {
    let blocks: Vec<Vec<String>> = readme_examples().into_iter().filter(|b| uses_samples(b)).collect();
    assert!(blocks.len() >= 2, "README examples: {blocks:?}");
    for b in &blocks {
        run_example("README", b);
    }
}

#[test]
fn comments_are_stripped_outside_quotes_only() {
    assert_eq!(strip_comment("vidfeat work --plan ds   # a comment"), "vidfeat work --plan ds");
    assert_eq!(strip_comment("vidfeat sample --classes 'a #1,b'"), "vidfeat sample --classes 'a #1,b'");
}
