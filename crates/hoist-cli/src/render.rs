//! Renders the engine's progress events: an indicatif bar on a terminal, JSON lines with `--json`,
//! nothing with `--quiet` (placeholder until `hoist put` lands).
