//! Test helpers for Hoist's integration tests: a real embedded store on an ephemeral port, a
//! fault-injecting proxy to put between a client and that store. Nothing here fakes S3: every helper sits in front of, or starts,
//! the real store.
//!
//! # Layout
//! - [`store`]: [`TestStore`], the embedded store on `127.0.0.1:0`, shut down on drop.
//! - [`fault_proxy`]: seeded TCP/HTTP proxy (reset, delay, 503 `SlowDown`, truncate, stall).

pub mod fault_proxy;
pub mod store;

pub use store::{TestStore, sdk_client};
