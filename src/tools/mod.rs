//! Client-side tools beside the sidecar: `sign` (sign a request as a gateway would), `verify`
//! (verify a saved request offline, with `--explain`), `keygen` (secrets, API keys, key pairs).

pub mod keygen;
pub mod sign;
pub mod verify;

use std::path::Path;

/// Writes a file readable by its owner only (private keys, secrets).
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents)
}

/// Writes a public file (refusing to overwrite, like `write_private`).
pub fn write_public(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(contents)
}

/// `s` in single quotes for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}
