//! Seeded fault-injecting HTTP proxy (owned by the engine work; placeholder).
