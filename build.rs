// The web UI's files are embedded by include_dir!, which cargo does not track: rebuild when they change.
fn main() {
    println!("cargo:rerun-if-changed=src/http/ui");
}
