//! Compiles the C programs under `c/` with clang into one BPF object in OUT_DIR, which
//! the crate embeds with `include_bytes!`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let src = "c/lb.bpf.c";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-changed=c/nodeport.bpf.h");
    let obj = out.join("lb.bpf.o");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".to_string());
    println!("cargo:rerun-if-env-changed=CLANG");
    let status = Command::new(&clang)
        .args([
            "-O2",
            "-g",
            "-Wall",
            "-Werror",
            "-target",
            "bpf",
            "-I/usr/include/x86_64-linux-gnu",
            "-c",
            src,
            "-o",
        ])
        .arg(&obj)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "clang failed to compile {src} ({s}); the BPF build needs the Debian packages \
             clang and libbpf-dev (apt-get install clang libbpf-dev)"
        ),
        Err(e) => panic!(
            "cannot run {clang} ({e}); the BPF build needs the Debian packages clang and \
             libbpf-dev (apt-get install clang libbpf-dev)"
        ),
    }
}
