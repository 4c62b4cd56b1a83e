//! torch-sys links libtorch but leaves no rpath in the final binaries: add one, so that
//! `vidfeat` and the test binaries find .deps/libtorch (or $LIBTORCH) without LD_LIBRARY_PATH.
//! Also records the libtorch version the crate is built against (from its headers), for the
//! provenance of outputs.
fn main() {
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        let header = std::path::Path::new(&dir).join("../include/torch/headeronly/version.h");
        println!("cargo:rerun-if-changed={}", header.display());
        if let Ok(text) = std::fs::read_to_string(&header) {
            let part = |name: &str| {
                text.lines().find_map(|l| l.trim().strip_prefix(&format!("#define TORCH_VERSION_{name} ")).map(|v| v.trim().to_string()))
            };
            if let (Some(a), Some(b), Some(c)) = (part("MAJOR"), part("MINOR"), part("PATCH")) {
                println!("cargo:rustc-env=VIDFEAT_LIBTORCH_VERSION={a}.{b}.{c}");
            }
        }
    }
}
