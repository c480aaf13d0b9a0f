//! The `hoist` binary (skeleton).
fn main() {}
