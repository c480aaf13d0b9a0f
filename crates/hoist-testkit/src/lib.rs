//! Test helpers for Hoist's integration tests: a real embedded store on an ephemeral port, a
//! fault-injecting proxy to put between a client and that store, and ways to send the store what
//! a well-behaved client would not. Nothing here fakes S3: every helper sits in front of, or
//! starts, the real store.
//!
//! # Layout
//! - [`store`]: [`TestStore`], the embedded store on `127.0.0.1:0`, shut down on drop.
//! - [`fault_proxy`]: an HTTP proxy that spoils chosen requests (the k-th of an S3 operation, or
//!   at random from a seed): resets, lost or cut responses, 5xx, 200 with an `<Error>`, missing
//!   or wrong ETags, a 200 that stored nothing, stalls, trickles, 403s, refused connections.
//! - [`failing`]: [`failing::FailingClient`], an `ObjectClient` over the real one that fails
//!   chosen calls (the k-th UploadPart, every abort…) and counts them.
//! - [`sdk`]: an SDK error's S3 code and message; pre-signed URLs; patterned test data.
//! - [`raw_http`]: HTTP/1.1 written byte by byte over TCP, and the response read back.
//! - [`post_form`]: browser POST uploads: a SigV4-signed POST policy and its form body, by hand.
//! - [`receiver`]: an HTTP server that records what it is sent and answers from a script
//!   (webhook receivers).
//! - [`conformance`]: where conformance cases run: the embedded store, or an external endpoint
//!   named by `HOIST_CONFORMANCE_*` variables.

pub mod conformance;
pub mod failing;
pub mod fault_proxy;
pub mod post_form;
pub mod raw_http;
pub mod receiver;
pub mod sdk;
pub mod store;

pub use sdk::{error_code, error_message, pattern};
pub use store::{TestStore, sdk_client};
