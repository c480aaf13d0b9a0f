//! hoist-server (skeleton).
