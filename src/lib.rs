//! countersign: a sidecar that terminates mTLS, verifies HTTP message signatures, IP ranges and
//! bearer tokens, and forwards what passes to the backend on loopback.
//!
//! The request-path modules are declared in the order a request meets them (each under its own
//! comment, so rustfmt keeps the order); the rest sit beside the path.

pub mod config;

// 1. accept, the PROXY header
pub mod listen;
pub mod proxy_protocol;
// 2. TLS and the peer's identity
pub mod tls;
// 3. HTTP/1.1 and HTTP/2 on the connection
pub mod keep_alive;
pub mod serve;
// 4. one request, top to bottom
pub mod app;
// 5. client IP, route
pub mod policy;
// 6. request signatures, against the key registry
pub mod registry;
pub mod signature;
// 7. bearer tokens
pub mod token;
// 8. the backend
pub mod proxy;
pub mod stream_idle;
pub mod tunnel;
pub mod upstream;
// refusals and the headers countersign owns
pub mod headers;
pub mod reject;
pub mod request_id;

// beside the path
pub mod admin;
pub mod check;
pub mod cli;
pub mod echo;
pub mod health;
pub mod inject;
pub mod logging;
pub mod metrics;
pub mod pki;
pub mod quickstart;
pub mod reload;
pub mod server;
pub mod signals;
pub mod state;
pub mod sys;
pub mod tools;
