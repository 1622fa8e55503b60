//! Embeds the web pages under `web/` into the binary, so the gateway serves them from
//! anywhere without a copy of the source tree.
//!
//! Paths are kept relative to this package (the generated code includes files through
//! `CARGO_MANIFEST_DIR`, and `rerun-if-changed` takes package-relative paths), so two
//! checkouts sharing one target dir never serve each other's pages.

use std::fmt::Write;
use std::path::{Path, PathBuf};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn main() {
    let web = Path::new("../../web");
    println!("cargo:rerun-if-changed=../../web");
    let mut files = Vec::new();
    walk(web, &mut files);
    let mut code = String::from("pub static ASSETS: &[(&str, &[u8])] = &[\n");
    for file in &files {
        let rel = file.strip_prefix(web).expect("file under web/").to_string_lossy().replace('\\', "/");
        println!("cargo:rerun-if-changed=../../web/{rel}");
        writeln!(code, "    (\"/{rel}\", include_bytes!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/../../web/{rel}\"))),")
            .expect("write to string");
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("assets.rs");
    std::fs::write(out, code).expect("write assets.rs");
}
