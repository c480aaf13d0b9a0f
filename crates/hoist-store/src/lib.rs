//! hoist-store (skeleton).
