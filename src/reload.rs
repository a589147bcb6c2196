//! Live rotation: rebuild the snapshot when a file it came from changes, never failing open.
//!
//! Every file the snapshot was built from is fingerprinted (SHA-256 of its content, read through
//! symlinks). The directories holding them are watched (a Kubernetes Secret or ConfigMap update
//! swaps the `..data` symlink in the directory, so watching the file itself would miss it), and the
//! fingerprints are also polled every `reload.poll_interval` where no file event arrives. A change
//! rebuilds the whole snapshot off the request path and publishes it in one atomic swap; a failed
//! rebuild keeps the last good snapshot, logs `path: message` and counts it. A key registry
//! fetched over HTTPS is polled the same way (`poll_remote_keys`) and a change rebuilds likewise.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError};
use crate::metrics;
use crate::state::{Shared, Snapshot};

/// Which kind of state a file feeds (the `what` label of the reload metrics).
pub type What = &'static str;

/// Every file a snapshot of `c` is built from, with its kind.
pub fn watched_files(c: &Config) -> Vec<(PathBuf, What)> {
    let mut out = vec![(c.source.clone(), "config")];
    if let Some(t) = &c.tls {
        for p in [&t.cert, &t.key, &t.client_ca].into_iter().flatten() {
            out.push((p.clone(), "tls"));
        }
        for p in &t.crl {
            out.push((p.clone(), "tls"));
        }
    }
    if let Some(crate::config::KeySource::File(p)) = &c.keys {
        out.push((p.clone(), "keys"));
    }
    if let Some(p) = &c.keys_fetch.ca_file {
        out.push((p.clone(), "keys"));
    }
    if let crate::config::ReplaySetting::Redis(r) = &c.signature.replay
        && let Some(p) = &r.ca_file
    {
        out.push((p.clone(), "replay"));
    }
    if let Some(p) = c.jwt.as_ref().and_then(|j| j.jwks_file.as_ref()) {
        out.push((p.clone(), "jwks"));
    }
    out
}

/// `watched_files` of the snapshot's config, plus the files its key registry read key material
/// from (labelled `keys`): a rotated `secret_file` or `public_key` reloads the registry even when
/// the registry file is unchanged (a Kubernetes Secret swap often changes only those).
fn snapshot_files(s: &Snapshot) -> Vec<(PathBuf, What)> {
    let mut out = watched_files(&s.config);
    for (p, _) in s.registry.iter().flat_map(|r| r.files()) {
        if !out.iter().any(|(f, _)| f == p) {
            out.push((p.clone(), "keys"));
        }
    }
    out
}

fn fingerprint(p: &Path) -> Option<[u8; 32]> {
    let bytes = std::fs::read(p).ok()?;
    let d = ring::digest::digest(&ring::digest::SHA256, &bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    Some(out)
}

type Prints = HashMap<PathBuf, Option<[u8; 32]>>;

fn fingerprints(files: &[(PathBuf, What)]) -> Prints {
    files
        .iter()
        .map(|(p, _)| (p.clone(), fingerprint(p)))
        .collect()
}

/// Publishes the gauges a snapshot carries and warns about certificates close to expiry.
pub fn publish(s: &Snapshot) {
    if let Some(r) = &s.registry {
        metrics::keys_loaded(r.len());
    }
    let Some(t) = &s.tls else { return };
    let warn_within = s
        .config
        .tls
        .as_ref()
        .map_or(0, |t| t.expiry_warning.as_secs() as i64);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for e in &t.expiries {
        metrics::cert_expiry(&e.name, e.unix);
        let left = e.unix - now;
        if left < 0 {
            tracing::warn!(cert = %e.name, file = %e.file, "certificate (or CRL next update) is in the past");
        } else if left < warn_within {
            tracing::warn!(cert = %e.name, file = %e.file, days_left = left / 86400, "certificate expires within tls.expiry_warning");
        }
    }
}

/// One rebuild at a time: the file watcher, SIGHUP and the remote registry poll may all ask.
static REBUILDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long after a reload the freed memory of the previous snapshot is handed back.
const TRIM_DELAY: Duration = Duration::from_secs(2);

/// Rebuilds the snapshot from the current config file. On success it is published; on failure
/// the last good one stays. `whats` labels the reload metrics. A changed JWKS file alone reloads
/// only the key set of the (kept) token verifier. A remote key registry whose URL or settings
/// changed is fetched first (bounded by `keys_timeout`).
pub async fn rebuild(state: &Shared, whats: &[What]) -> Result<(), ConfigError> {
    let _one = REBUILDING.lock().await;
    let current = state.load_full();
    if whats.contains(&"jwks")
        && let Some(j) = &current.jwt
    {
        match j.reload() {
            Ok(n) => {
                metrics::reload("jwks", true);
                tracing::info!(keys = n, "JWKS file reloaded");
            }
            Err(e) => {
                metrics::reload("jwks", false);
                tracing::error!(problem = %e, "JWKS reload failed; keeping the last good key set");
            }
        }
    }
    let whats: Vec<What> = whats.iter().copied().filter(|w| *w != "jwks").collect();
    if whats.is_empty() {
        return Ok(());
    }
    let result = match current.config.reread() {
        Ok(c) => {
            if c.listen != current.config.listen
                || c.admin != current.config.admin
                || c.upstream.uri != current.config.upstream.uri
            {
                tracing::warn!(
                    "listen, admin and upstream changes take effect only after a restart"
                );
            }
            Snapshot::load(c, Some(&current)).await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(s) => {
            publish(&s);
            s.start_background();
            state.store(Arc::new(s));
            crate::state::PUBLISHED.notify_waiters();
            drop(current);
            // In-flight requests let go of the old snapshot within moments; then give its memory
            // back.
            tokio::spawn(async {
                tokio::time::sleep(TRIM_DELAY).await;
                let _ = tokio::task::spawn_blocking(crate::sys::release_free_memory).await;
            });
            for w in &whats {
                metrics::reload(w, true);
            }
            tracing::info!(what = ?whats, "reloaded");
            Ok(())
        }
        Err(e) => {
            for w in &whats {
                metrics::reload(w, false);
            }
            for p in &e.problems {
                tracing::error!(problem = %p, "reload failed; keeping the last good state");
            }
            Err(e)
        }
    }
}

/// The kinds whose files differ between two fingerprint sets.
fn changed(files: &[(PathBuf, What)], old: &Prints, new: &Prints) -> Vec<What> {
    let set: BTreeSet<What> = files
        .iter()
        .filter(|(p, _)| old.get(p) != new.get(p))
        .map(|(_, w)| *w)
        .collect();
    set.into_iter().collect()
}

/// The watch over a snapshot's files, set up before the snapshot is built so that no change
/// between reading the files and watching them is missed.
pub struct Watch {
    files: Vec<(PathBuf, What)>,
    prints: Prints,
    tx: mpsc::UnboundedSender<()>,
    rx: mpsc::UnboundedReceiver<()>,
    watcher: Option<notify::RecommendedWatcher>,
}

impl Watch {
    /// Fingerprints and watches the files `config` names.
    pub fn new(config: &Config) -> Watch {
        let (tx, rx) = mpsc::unbounded_channel::<()>();
        let files = watched_files(config);
        let watcher = make_watcher(&files, tx.clone());
        Watch {
            prints: fingerprints(&files),
            files,
            tx,
            rx,
            watcher,
        }
    }

    /// Also watches the key files the first snapshot read, with the fingerprints of what it read
    /// (so a change made while it was being built is not missed).
    fn track_key_files(&mut self, s: &Snapshot) {
        let mut added = false;
        for (p, print) in s.registry.iter().flat_map(|r| r.files()) {
            if !self.files.iter().any(|(f, _)| f == p) {
                self.files.push((p.clone(), "keys"));
                self.prints.insert(p.clone(), Some(*print));
                added = true;
            }
        }
        if added {
            self.watcher = make_watcher(&self.files, self.tx.clone());
        }
    }

    /// Reloads on every change until `stop`, checking at least every `poll`.
    pub async fn run(mut self, state: Shared, poll: Duration, stop: CancellationToken) {
        self.track_key_files(&state.load());
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
                Some(()) = self.rx.recv() => {
                    // Let a burst of events (a symlink swap is several) settle.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    while self.rx.try_recv().is_ok() {}
                }
            }
            let new = fingerprints(&self.files);
            let whats = changed(&self.files, &self.prints, &new);
            if whats.is_empty() {
                continue;
            }
            // Remember what was seen even when the rebuild fails, so a broken file is reported once
            // and retried on its next change.
            self.prints = new;
            if rebuild(&state, &whats).await.is_ok() {
                let now = snapshot_files(&state.load());
                if now != self.files {
                    self.files = now;
                    self.prints = fingerprints(&self.files);
                    self.watcher = make_watcher(&self.files, self.tx.clone());
                }
            }
        }
    }
}

/// Polls the remote key registry of the current snapshot (`keys: https://...`) every
/// `keys_refresh` until `stop`, and rebuilds the snapshot when it changed. Between fetches the
/// current snapshot is looked up again, so a reload that changes or removes the URL is followed.
pub async fn poll_remote_keys(state: Shared, stop: CancellationToken) {
    loop {
        let snap = state.load_full();
        let remote = snap.remote_keys.clone();
        let wait = remote
            .as_ref()
            .map_or(snap.config.reload.poll_interval, |r| r.refresh());
        let signature = snap.config.signature.clone();
        drop(snap);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let Some(remote) = remote else { continue };
        let fetched = tokio::select! {
            _ = stop.cancelled() => return,
            f = remote.fetch(&signature) => f,
        };
        match fetched {
            Ok(crate::registry::remote::Fetched::Changed) => {
                tracing::info!(url = %remote.url(), "remote key registry changed");
                let _ = rebuild(&state, &["keys"]).await;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(url = %remote.url(), problem = %e, "remote key registry fetch failed; keeping the last good registry");
            }
        }
    }
}

fn make_watcher(
    files: &[(PathBuf, What)],
    tx: mpsc::UnboundedSender<()>,
) -> Option<notify::RecommendedWatcher> {
    let mut w = match notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        // Our own reads show up as access events; only changes matter.
        if let Ok(ev) = ev
            && !matches!(ev.kind, notify::EventKind::Access(_))
        {
            let _ = tx.send(());
        }
    }) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "file events unavailable; relying on reload.poll_interval");
            return None;
        }
    };
    let dirs: BTreeSet<PathBuf> = files
        .iter()
        .filter_map(|(p, _)| {
            p.parent().map(|d| {
                if d.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    d.to_path_buf()
                }
            })
        })
        .collect();
    for d in dirs {
        if let Err(e) = w.watch(&d, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %d.display(), error = %e, "cannot watch directory; relying on reload.poll_interval");
        }
    }
    Some(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_names_each_kind_once() {
        let files = vec![
            (PathBuf::from("/a/c.yaml"), "config"),
            (PathBuf::from("/a/t.crt"), "tls"),
            (PathBuf::from("/a/t.key"), "tls"),
        ];
        let old: Prints = files
            .iter()
            .map(|(p, _)| (p.clone(), Some([0u8; 32])))
            .collect();
        let mut new = old.clone();
        assert!(changed(&files, &old, &new).is_empty());
        new.insert(PathBuf::from("/a/t.crt"), Some([1u8; 32]));
        new.insert(PathBuf::from("/a/t.key"), None);
        assert_eq!(changed(&files, &old, &new), vec!["tls"]);
    }
}
