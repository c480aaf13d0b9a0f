//! hoist-testkit (skeleton).
