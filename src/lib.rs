//! countersign: a sidecar that terminates mTLS, verifies HTTP message signatures, IP ranges and
//! bearer tokens, and forwards what passes to the backend on loopback.
//!
//! Modules are declared in the order a request meets them.

pub mod config;
pub mod headers;
pub mod policy;
pub mod registry;
pub mod reject;
pub mod signature;
pub mod sys;
pub mod tools;
