//! Settings from three places, for every subcommand: `vidfeat.toml`, flags, and `VIDFEAT_*`
//! environment variables, in rising precedence (flags override the file; the environment
//! overrides both, so a cluster's job spec can change a setting baked into a command line).
//!
//! The clap definition stays the one source of truth: every option of a subcommand is a
//! setting, named by its long flag (`batch-size`, or `batch_size`), its variable
//! `VIDFEAT_BATCH_SIZE`. Resolution rebuilds the argument list from the three sources and
//! clap parses that, so validation, defaults and messages are clap's.
//!
//! The file: top-level keys apply to every subcommand that has the option; a table per
//! subcommand (`[run]`, `[work]`, `[pca.fit]`) applies to that one and wins over top-level
//! keys. Positional arguments (`inputs`) may be given in a subcommand's table; they have no
//! variable. An unknown key is an error, so a typo does not silently do nothing.
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Env(String),
    Flag,
    File,
    Default,
    Unset,
}

#[derive(Debug, Clone)]
pub struct Setting {
    /// The subcommand path (`run`, `pca.fit`), or None for options of every subcommand.
    pub section: Option<String>,
    pub key: String,
    pub values: Vec<String>,
    pub flag: bool,
    pub multiple: bool,
    pub source: Source,
}

#[derive(Debug)]
pub struct Resolved {
    /// What clap parses.
    pub argv: Vec<OsString>,
    pub settings: Vec<Setting>,
    /// The settings file read, if any.
    pub file: Option<PathBuf>,
    /// The subcommand words (`run`, `pca fit`).
    pub command: String,
}

/// The variable that sets `--long`.
pub fn env_name(long: &str) -> String {
    format!("VIDFEAT_{}", long.to_ascii_uppercase().replace('-', "_"))
}

fn is_setting(a: &Arg) -> bool {
    !matches!(a.get_action(), ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version)
        && !["config", "print_config"].contains(&a.get_id().as_str())
}

fn key_of(a: &Arg) -> String {
    a.get_long().map(str::to_string).unwrap_or_else(|| a.get_id().as_str().replace('_', "-"))
}

fn is_flag(a: &Arg) -> bool {
    matches!(a.get_action(), ArgAction::SetTrue)
}

fn is_multiple(a: &Arg) -> bool {
    matches!(a.get_action(), ArgAction::Append) || a.get_num_args().is_some_and(|r| r.max_values() > 1)
}

fn norm(k: &str) -> String {
    k.replace('_', "-")
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

fn toml_values(v: &toml::Value, what: &str) -> Result<Vec<String>> {
    Ok(match v {
        toml::Value::String(s) => vec![s.clone()],
        toml::Value::Integer(i) => vec![i.to_string()],
        toml::Value::Float(f) => vec![f.to_string()],
        toml::Value::Boolean(b) => vec![b.to_string()],
        toml::Value::Datetime(d) => vec![d.to_string()],
        toml::Value::Array(a) => {
            let mut out = vec![];
            for x in a {
                anyhow::ensure!(!matches!(x, toml::Value::Array(_) | toml::Value::Table(_)), "{what}: nested arrays and tables are not settings");
                out.extend(toml_values(x, what)?);
            }
            out
        }
        toml::Value::Table(_) => bail!("{what}: a table is not a setting"),
    })
}

/// The levels of the command line: the top command, the subcommand, a nested subcommand, with
/// their definitions and matches.
fn levels<'a>(cmd: &'a Command, m: &'a ArgMatches) -> Vec<(Vec<String>, &'a Command, &'a ArgMatches)> {
    let mut out = vec![(vec![], cmd, m)];
    let (mut c, mut mm, mut path) = (cmd, m, vec![]);
    while let Some((name, sub_m)) = mm.subcommand() {
        let Some(sub) = c.find_subcommand(name) else { break };
        path.push(name.to_string());
        out.push((path.clone(), sub, sub_m));
        (c, mm) = (sub, sub_m);
    }
    out
}

/// Checks every key of the file names an option somewhere, and returns the file's values
/// for one command path: (top-level keys, the subcommand's table).
fn file_values(table: &toml::Table, cmd: &Command, path: &[String], file: &Path) -> Result<(toml::Table, toml::Table)> {
    fn keys(c: &Command) -> Vec<String> {
        c.get_arguments().filter(|a| is_setting(a)).map(key_of).collect()
    }
    fn all_keys(c: &Command, out: &mut Vec<String>) {
        out.extend(keys(c));
        for s in c.get_subcommands() {
            all_keys(s, out);
        }
    }
    let mut every = vec![];
    all_keys(cmd, &mut every);
    let mut top = toml::Table::new();
    let mut section = toml::Table::new();
    // Walk a table whose keys are settings or subcommand tables.
    #[allow(clippy::too_many_arguments)]
    fn walk(t: &toml::Table, c: &Command, prefix: &[String], path: &[String], every: &[String], file: &Path, top: &mut toml::Table, section: &mut toml::Table) -> Result<()> {
        let here = keys(c);
        let globals = every; // top-level keys may name an option of any subcommand
        for (k, v) in t {
            if let (toml::Value::Table(sub), Some(sc)) = (v, c.find_subcommand(k)) {
                let mut p = prefix.to_vec();
                p.push(k.clone());
                walk(sub, sc, &p, path, every, file, top, section)?;
                continue;
            }
            let nk = norm(k);
            let name = if prefix.is_empty() { String::new() } else { format!(" in [{}]", prefix.join(".")) };
            let known = if prefix.is_empty() { globals.contains(&nk) } else { here.contains(&nk) };
            if !known {
                bail!("{}: unknown setting `{k}`{name} (settings are the long flags of `vidfeat {} --help`)", file.display(), if prefix.is_empty() { "<command>".to_string() } else { prefix.join(" ") });
            }
            if prefix.is_empty() {
                top.insert(nk, v.clone());
            } else if prefix == path {
                section.insert(nk, v.clone());
            }
        }
        Ok(())
    }
    walk(table, cmd, &[], path, &every, file, &mut top, &mut section)?;
    Ok((top, section))
}

/// Resolves the settings of the command line `argv` (argv[0] first) against the environment
/// (`env`) and a settings file: `--config PATH`, else `VIDFEAT_CONFIG`, else `./vidfeat.toml`
/// when it exists (`default_file`).
pub fn resolve(cmd: &Command, argv: Vec<OsString>, env: &dyn Fn(&str) -> Option<String>, default_file: &Path) -> Result<Resolved, clap::Error> {
    // A first parse with nothing required: a required option may come from the file or the
    // environment. --help and --version end here, as usual.
    fn relax(c: Command) -> Command {
        c.mut_args(|a| a.required(false)).mut_subcommands(relax)
    }
    let relaxed = relax(cmd.clone());
    let m = match relaxed.clone().try_get_matches_from(argv.clone()) {
        Ok(m) => m,
        // Help and version from the real definitions, so usage lines show what is required.
        Err(e) if !e.use_stderr() => return Err(cmd.clone().try_get_matches_from(argv).err().unwrap_or(e)),
        Err(e) => return Err(e),
    };
    let to_clap = |e: anyhow::Error| relaxed.clone().error(clap::error::ErrorKind::ValueValidation, format!("{e:#}"));

    let file = env("VIDFEAT_CONFIG").map(PathBuf::from).or_else(|| m.get_one::<PathBuf>("config").cloned());
    let (file, explicit) = match file {
        Some(f) => (Some(f), true),
        None => (default_file.exists().then(|| default_file.to_path_buf()), false),
    };
    let table = match &file {
        Some(f) => {
            let text = std::fs::read_to_string(f).with_context(|| format!("settings file {}", f.display())).map_err(to_clap)?;
            Some(text.parse::<toml::Table>().with_context(|| format!("settings file {}", f.display())).map_err(to_clap)?)
        }
        None => None,
    };
    let _ = explicit;

    let lv = levels(&relaxed, &m);
    let path: Vec<String> = lv.last().map(|l| l.0.clone()).unwrap_or_default();
    let (top, section) = match (&table, &file) {
        (Some(t), Some(f)) => file_values(t, &relaxed, &path, f).map_err(to_clap)?,
        _ => Default::default(),
    };

    let mut settings = vec![];
    let mut out: Vec<OsString> = vec![argv.first().cloned().unwrap_or_else(|| "vidfeat".into())];
    let deepest = lv.len() - 1;
    for (depth, (p, c, mm)) in lv.iter().enumerate() {
        if depth > 0 {
            out.push(p.last().unwrap().into());
        }
        let mut positional: Vec<String> = vec![];
        for a in c.get_arguments() {
            let id = a.get_id().as_str();
            // --config and --print-config pass through; they are not settings.
            if !is_setting(a) {
                if ["config", "print_config"].contains(&id) && mm.value_source(id) == Some(ValueSource::CommandLine) {
                    out.push(format!("--{}", key_of(a)).into());
                    if !is_flag(a) {
                        out.extend(mm.get_raw(id).into_iter().flatten().map(OsString::from));
                    }
                }
                continue;
            }
            let key = key_of(a);
            let (flag, multiple) = (is_flag(a), is_multiple(a));
            let from_flag = mm.value_source(id) == Some(ValueSource::CommandLine);
            let raw = || -> Vec<String> { mm.get_raw(id).into_iter().flatten().map(|v| v.to_string_lossy().into_owned()).collect() };
            let var = a.get_long().map(env_name);
            let (values, source) = if let Some((var, v)) = var.as_ref().and_then(|n| env(n).map(|v| (n.clone(), v))) {
                (vec![v], Source::Env(var))
            } else if from_flag {
                (raw(), Source::Flag)
            } else if let Some(v) = section.get(&key).or_else(|| if depth == 0 || depth == deepest { top.get(&key) } else { None }) {
                (toml_values(v, &key).map_err(to_clap)?, Source::File)
            } else {
                let d: Vec<String> = a.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
                if d.is_empty() && !flag {
                    (vec![], Source::Unset)
                } else {
                    (if flag && d.is_empty() { vec!["false".into()] } else { d }, Source::Default)
                }
            };
            if flag {
                let on = values.last().map(|v| parse_bool(v)).unwrap_or(Some(false));
                let on = on.ok_or_else(|| to_clap(anyhow::anyhow!("{key}: `{}` is not a boolean (true/false, 1/0, yes/no)", values.join(","))))?;
                if on {
                    out.push(format!("--{key}").into());
                }
                settings.push(Setting { section: (depth > 0).then(|| p.join(".")), key, values: vec![on.to_string()], flag, multiple, source });
                continue;
            }
            if values.len() > 1 && !multiple && a.get_value_delimiter().is_none() {
                return Err(to_clap(anyhow::anyhow!("{key}: one value expected, got {}", values.len())));
            }
            if matches!(source, Source::Env(_) | Source::Flag | Source::File) {
                if a.is_positional() {
                    positional.extend(values.iter().cloned());
                } else {
                    for v in &values {
                        out.push(format!("--{key}={v}").into());
                    }
                }
            }
            settings.push(Setting { section: (depth > 0).then(|| p.join(".")), key, values, flag, multiple, source });
        }
        if !positional.is_empty() {
            if depth == deepest {
                out.push("--".into());
            }
            out.extend(positional.into_iter().map(OsString::from));
        }
    }
    Ok(Resolved { argv: out, settings, file, command: path.join(" ") })
}

fn toml_scalar(v: &str) -> String {
    if v.parse::<i64>().is_ok() {
        return v.to_string();
    }
    if v.chars().all(|c| c.is_ascii_digit() || ".eE+-".contains(c)) && v.parse::<f64>().is_ok_and(f64::is_finite) && v.contains('.') {
        return v.to_string();
    }
    toml::Value::String(v.to_string()).to_string()
}

/// The effective settings as a `vidfeat.toml` that reproduces them, each with its source.
pub fn render(r: &Resolved) -> String {
    let command = &r.command;
    let mut s = format!(
        "# Effective settings of `vidfeat {command}`; precedence: VIDFEAT_* environment > flags > settings file{} > defaults.\n# This output is itself a valid settings file.\n",
        r.file.as_ref().map(|f| format!(" ({})", f.display())).unwrap_or_default()
    );
    let mut section: Option<&str> = None;
    for st in &r.settings {
        if st.section.as_deref() != section {
            section = st.section.as_deref();
            if let Some(sec) = section {
                s.push_str(&format!("\n[{sec}]\n"));
            }
        }
        let src = match &st.source {
            Source::Env(v) => v.clone(),
            Source::Flag => "command line".into(),
            Source::File => "settings file".into(),
            Source::Default => "default".into(),
            Source::Unset => {
                s.push_str(&format!("# {} (not set)\n", st.key));
                continue;
            }
        };
        let value = if st.flag {
            st.values[0].clone()
        } else if st.multiple {
            format!("[{}]", st.values.iter().map(|v| toml_scalar(v)).collect::<Vec<_>>().join(", "))
        } else {
            toml_scalar(&st.values.join(","))
        };
        s.push_str(&format!("{} = {value}  # {src}\n", st.key));
    }
    s
}

/// The effective settings as JSON, for provenance: `{key: {"value", "source"}}`, each set
/// setting once (the subcommand's table path prefixed to its keys: `pca.fit.dims`).
pub fn to_json(r: &Resolved) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for st in &r.settings {
        let source = match &st.source {
            Source::Env(v) => v.clone(),
            Source::Flag => "command line".into(),
            Source::File => "settings file".into(),
            Source::Default => "default".into(),
            Source::Unset => continue,
        };
        let value = if st.flag {
            serde_json::Value::Bool(st.values.first().is_some_and(|v| v == "true"))
        } else if st.multiple {
            st.values.iter().map(|v| serde_json::Value::String(v.clone())).collect()
        } else {
            serde_json::Value::String(st.values.join(","))
        };
        let key = match &st.section {
            Some(sec) if sec.contains('.') => format!("{sec}.{}", st.key),
            _ => st.key.clone(),
        };
        m.insert(key, serde_json::json!({"value": value, "source": source}));
    }
    serde_json::Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct T {
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        #[arg(long, global = true, default_value = "auto")]
        progress: String,
        #[command(subcommand)]
        cmd: Sub,
    }
    #[derive(clap::Subcommand, Debug)]
    enum Sub {
        Run {
            #[arg(required = true)]
            inputs: Vec<PathBuf>,
            #[arg(long)]
            out: PathBuf,
            #[arg(long, default_value_t = 8)]
            batch_size: usize,
            #[arg(long, default_value = "cpu")]
            device: String,
            #[arg(long)]
            strict: bool,
            #[arg(long, value_delimiter = ',')]
            classes: Vec<String>,
        },
        Status {
            dir: PathBuf,
        },
    }

    fn run(args: &[&str], env: &[(&str, &str)], file: Option<&str>) -> Result<(T, Resolved), String> {
        use clap::CommandFactory;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("vidfeat.toml");
        if let Some(text) = file {
            std::fs::write(&f, text).unwrap();
        }
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let argv = std::iter::once("vidfeat").chain(args.iter().copied()).map(OsString::from).collect();
        let r = resolve(&T::command(), argv, &get, &f).map_err(|e| e.to_string())?;
        let t = T::try_parse_from(&r.argv).map_err(|e| e.to_string())?;
        Ok((t, r))
    }

    fn run_fields(t: &T) -> (usize, String, bool, Vec<String>, PathBuf, Vec<PathBuf>) {
        match &t.cmd {
            Sub::Run { batch_size, device, strict, classes, out, inputs } => (*batch_size, device.clone(), *strict, classes.clone(), out.clone(), inputs.clone()),
            _ => panic!("not run"),
        }
    }

    #[test]
    fn flags_override_the_file_and_the_environment_overrides_both() {
        let file = "device = \"cuda\"\nprogress = \"never\"\n[run]\nbatch-size = 32\nout = \"from-file\"\nstrict = true\n";
        // File alone: top-level key, table keys, a required option and a flag from the file.
        let (t, _) = run(&["run", "a.csv"], &[], Some(file)).unwrap();
        assert_eq!(run_fields(&t), (32, "cuda".into(), true, vec![], "from-file".into(), vec!["a.csv".into()]));
        assert_eq!(t.progress, "never");
        // Flags beat the file.
        let (t, _) = run(&["run", "a.csv", "--batch-size", "4", "--out", "o"], &[], Some(file)).unwrap();
        assert_eq!(run_fields(&t).0, 4);
        assert_eq!(run_fields(&t).4, PathBuf::from("o"));
        // The environment beats flags and file, a global option given after the subcommand too;
        // a flag can be switched off from the environment.
        let env = [("VIDFEAT_BATCH_SIZE", "16"), ("VIDFEAT_STRICT", "false"), ("VIDFEAT_PROGRESS", "always")];
        let (t, r) = run(&["run", "a.csv", "--batch-size", "4", "--progress", "auto"], &env, Some(file)).unwrap();
        assert_eq!(run_fields(&t).0, 16);
        assert!(!run_fields(&t).2);
        assert_eq!(t.progress, "always");
        let bs = r.settings.iter().find(|s| s.key == "batch-size").unwrap();
        assert_eq!(bs.source, Source::Env("VIDFEAT_BATCH_SIZE".into()));
        // Lists: from the file as an array, from the environment comma-separated.
        let (t, _) = run(&["run", "a.csv"], &[], Some("[run]\nout = \"o\"\nclasses = [\"x y\", \"z\"]\n")).unwrap();
        assert_eq!(run_fields(&t).3, vec!["x y", "z"]);
        let (t, _) = run(&["run", "a.csv", "--out", "o"], &[("VIDFEAT_CLASSES", "p,q")], None).unwrap();
        assert_eq!(run_fields(&t).3, vec!["p", "q"]);
        // Positional inputs from the file; a command line's own inputs win.
        let (t, _) = run(&["run"], &[], Some("[run]\ninputs = [\"l1.csv\", \"l2.csv\"]\nout = \"o\"\n")).unwrap();
        assert_eq!(run_fields(&t).5, vec![PathBuf::from("l1.csv"), PathBuf::from("l2.csv")]);
        // A value starting with '-' stays a value.
        let (t, _) = run(&["run", "a.csv"], &[("VIDFEAT_OUT", "-odd")], None).unwrap();
        assert_eq!(run_fields(&t).4, PathBuf::from("-odd"));
    }

    #[test]
    fn mistakes_are_named() {
        let e = run(&["run", "a.csv", "--out", "o"], &[], Some("batchsize = 3\n")).unwrap_err();
        assert!(e.contains("unknown setting `batchsize`"), "{e}");
        let e = run(&["run", "a.csv", "--out", "o"], &[], Some("[status]\nout = \"x\"\n")).unwrap_err();
        assert!(e.contains("unknown setting `out` in [status]"), "{e}");
        let e = run(&["run", "a.csv", "--out", "o"], &[("VIDFEAT_STRICT", "maybe")], None).unwrap_err();
        assert!(e.contains("not a boolean"), "{e}");
        let e = run(&["run", "a.csv", "--out", "o"], &[("VIDFEAT_BATCH_SIZE", "many")], None).unwrap_err();
        assert!(e.contains("batch-size") && e.contains("many"), "{e}");
        let e = run(&["run", "a.csv", "--out", "o"], &[], Some("device = [")).unwrap_err();
        assert!(e.contains("vidfeat.toml"), "{e}");
        // Still required when no source gives it.
        assert!(run(&["run", "a.csv"], &[], None).is_err());
        // Help shows what is required, though resolution parses with nothing required.
        let help = run(&["run", "--help"], &[], None).unwrap_err();
        assert!(help.contains("--out <OUT>") && help.contains("<INPUTS>...") && !help.contains("[INPUTS]"), "{help}");
        // A top-level key another subcommand lacks is fine there.
        let (t, _) = run(&["status", "d"], &[], Some("device = \"cuda\"\n")).unwrap();
        assert!(matches!(t.cmd, Sub::Status { .. }));
    }

    #[test]
    fn printed_settings_read_back_to_the_same_settings() {
        let file = "device = \"cuda\"\n[run]\nbatch-size = 32\nout = \"o d\"\nclasses = [\"a\", \"b\"]\n";
        let (_, r) = run(&["run", "x.csv", "--strict"], &[("VIDFEAT_PROGRESS", "never")], Some(file)).unwrap();
        assert_eq!(r.command, "run");
        let text = render(&r);
        assert!(text.contains("batch-size = 32  # settings file"), "{text}");
        assert!(text.contains("strict = true  # command line"), "{text}");
        assert!(text.contains("progress = \"never\"  # VIDFEAT_PROGRESS"), "{text}");
        assert!(text.contains("# config") == false);
        let (t2, r2) = run(&["run"], &[], Some(&text)).unwrap();
        let vals = |r: &Resolved| r.settings.iter().map(|s| (s.key.clone(), s.values.clone())).collect::<Vec<_>>();
        assert_eq!(vals(&r), vals(&r2));
        assert_eq!(run_fields(&t2), (32, "cuda".into(), true, vec!["a".into(), "b".into()], "o d".into(), vec!["x.csv".into()]));
    }
}
