//! countersign: a sidecar that terminates mTLS, verifies HTTP message signatures, IP ranges and
//! bearer tokens, and forwards what passes to the backend on loopback.
//!
//! The request path, in the order a request meets it: `listen` (accept, PROXY header, TLS
//! handshake) → `serve` (HTTP/1.1 and HTTP/2) → `app` (the request, top to bottom) → `policy`
//! (client IP, route) → the verifiers → `proxy` (the backend). Beside the path: `admin`, `metrics`,
//! `state` (the published snapshot), `server` (start, reload, drain).

pub mod app;
pub mod config;
pub mod headers;
pub mod listen;
pub mod policy;
pub mod proxy;
pub mod proxy_protocol;
pub mod reject;
pub mod request_id;
pub mod serve;
pub mod tls;

pub mod admin;
pub mod check;
pub mod cli;
pub mod echo;
pub mod logging;
pub mod metrics;
pub mod pki;
pub mod quickstart;
pub mod reload;
pub mod server;
pub mod signals;
pub mod state;
pub mod sys;
pub mod token;
