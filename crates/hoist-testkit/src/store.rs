//! The embedded store on an ephemeral port for tests (owned by the store work; placeholder).
