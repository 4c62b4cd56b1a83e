//! torch-sys links libtorch but leaves no rpath in the final binaries: add one, so that
//! `vidfeat` and the test binaries find .deps/libtorch (or $LIBTORCH) without LD_LIBRARY_PATH.
//! Built from a git checkout, the commit goes into the binary (`VIDFEAT_GIT_COMMIT`) for the
//! provenance of outputs.
fn main() {
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    let git = std::path::Path::new(".git");
    if git.is_dir() {
        println!("cargo:rerun-if-changed=.git/HEAD");
        if let Some(r) = std::fs::read_to_string(git.join("HEAD")).ok().and_then(|h| h.strip_prefix("ref: ").map(|r| r.trim().to_string())) {
            println!("cargo:rerun-if-changed=.git/{r}");
            println!("cargo:rerun-if-changed=.git/packed-refs");
        }
        if let Ok(o) = std::process::Command::new("git").args(["rev-parse", "HEAD"]).output() {
            let commit = String::from_utf8_lossy(&o.stdout).trim().to_string();
            if o.status.success() && commit.len() == 40 {
                println!("cargo:rustc-env=VIDFEAT_GIT_COMMIT={commit}");
            }
        }
    }
}
