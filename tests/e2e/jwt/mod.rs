//! Bearer tokens (`src/token`): a real IdP on 127.0.0.1, tokens minted here with ring, and
//! fixtures minted by PyJWT.

mod config;
mod https;
pub(crate) mod idp;
mod introspection;
mod keys;
mod pyjwt;
mod sidecar;
mod verify;
