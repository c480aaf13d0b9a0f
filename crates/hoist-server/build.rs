//! Embeds the browser files of `web/` (top level only: `.html`, `.js`, `.css`; not tests or
//! `node_modules`) into the binary, so `hoist serve` is one file to deploy.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    // The manifest dir of this build, read when the script runs: a script binary reused from
    // another checkout sharing the target dir must not embed that checkout's files.
    let manifest = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|e| panic!("cargo sets CARGO_MANIFEST_DIR for build scripts: {e}"));
    let web = Path::new(&manifest).join("../../web");
    println!("cargo:rerun-if-changed={}", web.display());
    let mut files: Vec<_> = std::fs::read_dir(&web)
        .unwrap_or_else(|e| panic!("cannot read the page's files in {}: {e}", web.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut out = String::from(
        "/// Files served at `/NAME`: (name, bytes, content type).\npub(crate) static FILES: &[(&str, &[u8], &str)] = &[\n",
    );
    for path in files {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
        let mime = match ext.as_str() {
            "html" => "text/html; charset=utf-8",
            "js" => "text/javascript; charset=utf-8",
            "css" => "text/css; charset=utf-8",
            _ => continue,
        };
        println!("cargo:rerun-if-changed={}", path.display());
        let _ = writeln!(
            out,
            "    ({name:?}, include_bytes!({:?}), {mime:?}),",
            path.canonicalize().unwrap_or(path.clone()).display()
        );
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap_or_default()).join("web_files.rs");
    std::fs::write(dest, out).unwrap_or_else(|e| panic!("cannot write the embedded web file table: {e}"));
}
