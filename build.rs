//! torch-sys links libtorch but leaves no rpath in the final binaries: add one, so that
//! `vidfeat` and the test binaries find .deps/libtorch (or $LIBTORCH) without LD_LIBRARY_PATH.
fn main() {
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
