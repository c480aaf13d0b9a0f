//! hoist-core (skeleton).
