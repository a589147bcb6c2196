//! End-to-end tests: the real sidecar (in-process, or the binary as a child process where signals,
//! exit codes or descriptor limits are involved), real TLS, real backends on 127.0.0.1.

#[path = "../common/h2_idle.rs"]
mod h2_idle;
mod support;

mod admin;
mod api_keys;
mod client_ip;
mod faults;
mod hostile;
mod hostile_h2;
mod interop;
mod jwt;
mod key_rotation;
mod mtls;
mod process;
mod proxying;
mod remote_keys;
mod replay_redis;
mod rotation;
mod routing;
mod signatures;
mod tunnels;
mod tyk;
