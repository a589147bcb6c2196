//! Signing keys rotate under load (issue 4): clients keep sending signed mTLS requests while a
//! key is added, the old one removed, a broken registry written, and the keys directory swapped
//! the way Kubernetes updates a mounted Secret. Every change takes effect within 2 s, requests
//! that should pass never fail, and a broken file changes nothing.

use std::path::Path;
use std::sync::Arc;

use crate::support::*;

const YAML: &str = "upstream: http://{UP}\ntls:\n  cert: server.crt\n  key: server.key\n  client_ca: ca.crt\n  crl: [crl.pem]\nkeys: KEYS\nreload:\n  poll_interval: POLL\nroutes:\n  - path: /\n    require: [mtls, signature]\n";

fn hmac_entry(id: &str, secret: &str) -> String {
    format!("  - id: {id}\n    algorithm: hmac-sha256\n    secret: \"{secret}\"\n")
}

fn signed(sc: &Sidecar, key: &str, secret: &str) -> countersign::tools::sign::Signed {
    let url = sc.url("/orders");
    let secret = format!("--secret={secret}");
    sign(&[
        "--scheme",
        "cavage",
        "--key-id",
        key,
        "--alg",
        "hmac-sha256",
        &secret,
        "--url",
        &url,
    ])
}

/// A load of requests freshly signed with `key` (each request signs anew).
fn signing_load(c: &reqwest::Client, sc: &Sidecar, key: &str, secret: &str) -> Load {
    let (c, url, key, secret) = (
        c.clone(),
        sc.url("/orders"),
        key.to_string(),
        format!("--secret={secret}"),
    );
    Load::with(
        3,
        Arc::new(move || {
            let s = sign(&[
                "--scheme",
                "cavage",
                "--key-id",
                &key,
                "--alg",
                "hmac-sha256",
                &secret,
                "--url",
                &url,
            ]);
            signed_request(&c, &s)
        }),
    )
}

/// The status and code of one request signed with `key`.
async fn probe(c: &reqwest::Client, sc: &Sidecar, key: &str, secret: &str) -> (u16, String) {
    let r = send(c, &signed(sc, key, secret)).await;
    (r.status, r.code().to_string())
}

fn allowed() -> (u16, String) {
    (200, String::new())
}

fn unknown_key() -> (u16, String) {
    (401, "unknown_key".to_string())
}

#[tokio::test]
async fn signing_keys_rotate_under_load() {
    let pki = Pki::new();
    let be = echo().await;
    pki.write(
        "keys.yaml",
        &format!("keys:\n{}", hmac_entry("tyk-2026a", "old-secret")),
    );
    let sc = Sidecar::start(
        &pki,
        be.addr,
        &YAML.replace("KEYS", "keys.yaml").replace("POLL", "200ms"),
    )
    .await;
    let c = client(&pki, &sc, Some(&pki.client));
    assert_eq!(probe(&c, &sc, "tyk-2026a", "old-secret").await, allowed());
    assert_eq!(
        probe(&c, &sc, "tyk-2026b", "new-secret").await,
        unknown_key()
    );
    let old = signing_load(&c, &sc, "tyk-2026a", "old-secret");

    // 1. Add the new key: accepted within 2 s, the old one never fails meanwhile.
    let both = format!(
        "keys:\n{}{}",
        hmac_entry("tyk-2026a", "old-secret"),
        hmac_entry("tyk-2026b", "new-secret")
    );
    pki.write("keys.yaml", &both);
    eventually(2, || async {
        probe(&c, &sc, "tyk-2026b", "new-secret").await == allowed()
    })
    .await;
    let new = signing_load(&c, &sc, "tyk-2026b", "new-secret");
    eventually(5, || async { new.ok() > 20 }).await;
    let (ok, failures) = old.finish().await;
    assert!(
        failures.is_empty(),
        "old key failed during the add: {:?}",
        failures.first()
    );
    assert!(ok > 20, "only {ok} requests with the old key");

    // 2. Remove the old key: refused within 2 s, the new one keeps passing.
    pki.write(
        "keys.yaml",
        &format!("keys:\n{}", hmac_entry("tyk-2026b", "new-secret")),
    );
    eventually(2, || async {
        probe(&c, &sc, "tyk-2026a", "old-secret").await == unknown_key()
    })
    .await;

    // 3. A broken registry (bad YAML, then an unknown algorithm) changes nothing and is counted.
    for broken in [
        "keys: [ this is not yaml".to_string(),
        "keys:\n  - id: tyk-2026c\n    algorithm: hmac-md5\n    secret: \"x\"\n".to_string(),
    ] {
        let errors = reloads(&sc, "keys", "error").await;
        pki.write("keys.yaml", &broken);
        eventually(2, || async { reloads(&sc, "keys", "error").await > errors }).await;
        assert_eq!(
            probe(&c, &sc, "tyk-2026a", "old-secret").await,
            unknown_key()
        );
        assert_eq!(probe(&c, &sc, "tyk-2026b", "new-secret").await, allowed());
    }
    let ready = plain_client()
        .get(format!("http://{}/readyz", sc.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(
        ready.status(),
        200,
        "/readyz stays 200 after a failed reload"
    );
    let before = new.ok();
    eventually(5, || async { new.ok() > before + 10 }).await;
    let (ok, failures) = new.finish().await;
    assert!(
        failures.is_empty(),
        "new key failed: {:?}",
        failures.first()
    );
    assert!(ok > 30, "only {ok} requests with the new key");
    sc.stop().await;
}

/// Writes one version of a Kubernetes-mounted Secret directory (`..<version>/<files>`).
fn secret_version(dir: &Path, version: &str, files: &[(&str, &str)]) {
    let v = dir.join(version);
    std::fs::create_dir_all(&v).unwrap();
    for (name, text) in files {
        std::fs::write(v.join(name), text).unwrap();
    }
}

/// Points `..data` at `version` atomically (a symlink renamed over the old one), as kubelet does.
fn swap_to(dir: &Path, version: &str) {
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(version, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
}

#[tokio::test]
async fn kubernetes_secret_swap_of_the_keys_directory() {
    let pki = Pki::new();
    let be = echo().await;
    // keys/..2026_a/{keys.yaml,edge-a.secret}, keys/..data -> ..2026_a, keys/<file> -> ..data/<file>
    let dir = pki.path().join("keys");
    let registry_a =
        "keys:\n  - id: edge-a\n    algorithm: hmac-sha256\n    secret_file: edge-a.secret\n";
    secret_version(
        &dir,
        "..2026_a",
        &[("keys.yaml", registry_a), ("edge-a.secret", "secret-a")],
    );
    std::os::unix::fs::symlink("..2026_a", dir.join("..data")).unwrap();
    for f in ["keys.yaml", "edge-a.secret", "edge-b.secret"] {
        std::os::unix::fs::symlink(format!("..data/{f}"), dir.join(f)).unwrap();
    }
    // poll_interval is an hour: only the directory events can make this pass.
    let sc = Sidecar::start(
        &pki,
        be.addr,
        &YAML.replace("KEYS", "keys/keys.yaml").replace("POLL", "1h"),
    )
    .await;
    let c = client(&pki, &sc, Some(&pki.client));
    let load = signing_load(&c, &sc, "edge-a", "secret-a");

    // Version b adds edge-b next to edge-a.
    let registry_b = format!(
        "{registry_a}  - id: edge-b\n    algorithm: hmac-sha256\n    secret_file: edge-b.secret\n"
    );
    secret_version(
        &dir,
        "..2026_b",
        &[
            ("keys.yaml", &registry_b),
            ("edge-a.secret", "secret-a"),
            ("edge-b.secret", "secret-b"),
        ],
    );
    swap_to(&dir, "..2026_b");
    std::fs::remove_dir_all(dir.join("..2026_a")).unwrap();
    eventually(2, || async {
        probe(&c, &sc, "edge-b", "secret-b").await == allowed()
    })
    .await;
    let (ok, failures) = load.finish().await;
    assert!(
        failures.is_empty(),
        "edge-a failed during the swap: {:?}",
        failures.first()
    );
    assert!(ok > 10);

    // Version c drops edge-a.
    let registry_c =
        "keys:\n  - id: edge-b\n    algorithm: hmac-sha256\n    secret_file: edge-b.secret\n";
    secret_version(
        &dir,
        "..2026_c",
        &[("keys.yaml", registry_c), ("edge-b.secret", "secret-b")],
    );
    let load = signing_load(&c, &sc, "edge-b", "secret-b");
    swap_to(&dir, "..2026_c");
    std::fs::remove_dir_all(dir.join("..2026_b")).unwrap();
    eventually(2, || async {
        probe(&c, &sc, "edge-a", "secret-a").await == unknown_key()
    })
    .await;
    let (ok, failures) = load.finish().await;
    assert!(
        failures.is_empty(),
        "edge-b failed during the swap: {:?}",
        failures.first()
    );
    assert!(ok > 10);

    // Version d rotates edge-b's secret; keys.yaml is byte for byte the same.
    secret_version(
        &dir,
        "..2026_d",
        &[("keys.yaml", registry_c), ("edge-b.secret", "secret-b2")],
    );
    swap_to(&dir, "..2026_d");
    std::fs::remove_dir_all(dir.join("..2026_c")).unwrap();
    eventually(2, || async {
        probe(&c, &sc, "edge-b", "secret-b2").await == allowed()
    })
    .await;
    assert_eq!(
        probe(&c, &sc, "edge-b", "secret-b").await,
        (401, "signature_invalid".to_string())
    );
    sc.stop().await;
}

#[tokio::test]
async fn a_rotated_secret_file_is_reloaded_without_a_registry_change() {
    let pki = Pki::new();
    let be = echo().await;
    // The same key id keeps its entry; only the secret file behind it changes.
    pki.write(
        "keys.yaml",
        "keys:\n  - id: edge\n    algorithm: hmac-sha256\n    secret_file: edge.secret\n",
    );
    pki.write("edge.secret", "secret-one");
    let sc = Sidecar::start(
        &pki,
        be.addr,
        &YAML.replace("KEYS", "keys.yaml").replace("POLL", "200ms"),
    )
    .await;
    let c = client(&pki, &sc, Some(&pki.client));
    assert_eq!(probe(&c, &sc, "edge", "secret-one").await, allowed());
    pki.write("edge.secret", "secret-two");
    eventually(2, || async {
        probe(&c, &sc, "edge", "secret-two").await == allowed()
    })
    .await;
    assert_eq!(
        probe(&c, &sc, "edge", "secret-one").await,
        (401, "signature_invalid".to_string())
    );
    sc.stop().await;
}
