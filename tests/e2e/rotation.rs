//! Live rotation under load: certificates, CRLs, CA bundles, allow-lists, the Kubernetes symlink
//! swap, broken and deleted files. Each change must take effect within 2 s, requests that should
//! pass never fail, and a broken file changes nothing.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// The SHA-256 of the certificate the server presents on a new handshake.
async fn served_cert(pki: &Pki, sc: &Sidecar) -> Vec<u8> {
    let s = tls_connect(pki, sc.addr, Some(&pki.client), b"")
        .await
        .unwrap();
    let der = s.get_ref().1.peer_certificates().unwrap()[0].clone();
    ring::digest::digest(&ring::digest::SHA256, &der)
        .as_ref()
        .to_vec()
}

pub const YAML: &str = "upstream: http://{UP}\ntls:\n  cert: server.crt\n  key: server.key\n  client_ca: ca.crt\n  crl: [crl.pem]\n  allow_clients:\n    - subject_cn: tyk-edge\n    - subject_cn: revoked\nreload:\n  poll_interval: 200ms\nroutes:\n  - path: /\n    require: [mtls]\n";

#[tokio::test]
async fn server_certificate_rotates_under_load() {
    let pki = Pki::new();
    let be = echo().await;
    let sc = Sidecar::start(&pki, be.addr, YAML).await;
    let load = Load::start(client(&pki, &sc, Some(&pki.client)), sc.url("/"), 4);
    let before = served_cert(&pki, &sc).await;
    let fresh = pki.ca.server("countersign-2", &[]).unwrap();
    // Write the key first and the certificate second, as a careless operator would: the half-way
    // state (new key, old cert) is refused and the old pair keeps serving.
    pki.write("server.key", &fresh.key_pem);
    tokio::time::sleep(Duration::from_millis(400)).await;
    pki.write("server.crt", &fresh.cert_pem);
    let want = ring::digest::digest(&ring::digest::SHA256, &fresh.der)
        .as_ref()
        .to_vec();
    eventually(2, || async { served_cert(&pki, &sc).await == want }).await;
    assert_ne!(before, want);
    let (ok, failures) = load.finish().await;
    assert!(
        failures.is_empty(),
        "{} failures, e.g. {:?}",
        failures.len(),
        failures.first()
    );
    assert!(ok > 10);
    assert!(reloads(&sc, "tls", "success").await >= 1.0);
    sc.stop().await;
}

#[tokio::test]
async fn a_new_crl_refuses_new_handshakes_and_closes_kept_alive_connections() {
    let pki = Pki::new();
    let be = echo().await;
    let sc = Sidecar::start(&pki, be.addr, YAML).await;
    let load = Load::start(client(&pki, &sc, Some(&pki.client)), sc.url("/"), 3);
    // A kept-alive connection from the client about to be revoked (tyk-edge2 is allowed via CN).
    let victim = pki.ca.client("revoked").unwrap();
    let mut kept = tls_connect(&pki, sc.addr, Some(&victim), b"")
        .await
        .unwrap();
    kept.write_all(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = kept.read(&mut buf).await.unwrap();
    assert_eq!(status_of(&String::from_utf8_lossy(&buf[..n])), 200);

    pki.revoke(&victim);
    eventually(2, || async {
        raw_tls(
            &pki,
            sc.addr,
            Some(&victim),
            b"",
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await
        .is_err()
    })
    .await;
    // The kept-alive connection is refused on its next request and then closed.
    kept.write_all(b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), kept.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert_eq!(status_of(&text), 403, "{text}");
    assert!(text.contains("client_cert_denied"));
    let (_, failures) = load.finish().await;
    assert!(failures.is_empty(), "{:?}", failures.first());
    sc.stop().await;
}

#[tokio::test]
async fn allow_clients_change_and_ca_bundle_replacement() {
    let pki = Pki::new();
    let be = echo().await;
    let sc = Sidecar::start(&pki, be.addr, YAML).await;
    let c = client(&pki, &sc, Some(&pki.client));
    assert_eq!(c.get(sc.url("/")).send().await.unwrap().status(), 200);
    // Drop tyk-edge from allow_clients: the next request is refused.
    sc.edit_config("subject_cn: tyk-edge", "subject_cn: someone-else");
    eventually(2, || async {
        c.get(sc.url("/"))
            .send()
            .await
            .map(|r| r.status() == 403)
            .unwrap_or(true)
    })
    .await;
    // Replace the CA bundle with a foreign CA: the old clients fail the handshake, the foreign one passes.
    let other = countersign::pki::DevCa::new("other CA").unwrap();
    let newcomer = other.client("someone-else").unwrap();
    pki.write("ca.crt", &other.cert_pem());
    pki.write(
        "crl.pem",
        &other
            .crl(
                &[],
                time::OffsetDateTime::now_utc() + time::Duration::days(1),
            )
            .unwrap(),
    );
    eventually(2, || async {
        raw_tls(
            &pki,
            sc.addr,
            Some(&newcomer),
            b"",
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await
        .map(|r| status_of(&r) == 200)
        .unwrap_or(false)
    })
    .await;
    assert!(
        raw_tls(
            &pki,
            sc.addr,
            Some(&pki.client),
            b"",
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .await
        .is_err()
    );
    sc.stop().await;
}

#[tokio::test]
async fn broken_and_deleted_files_change_nothing() {
    let pki = Pki::new();
    let be = echo().await;
    let sc = Sidecar::start(&pki, be.addr, YAML).await;
    let load = Load::start(client(&pki, &sc, Some(&pki.client)), sc.url("/"), 3);
    let before = served_cert(&pki, &sc).await;
    let good_cert = std::fs::read_to_string(pki.path().join("server.crt")).unwrap();
    pki.write(
        "server.crt",
        "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n",
    );
    eventually(2, || async { reloads(&sc, "tls", "error").await >= 1.0 }).await;
    std::fs::remove_file(pki.path().join("crl.pem")).unwrap();
    eventually(2, || async { reloads(&sc, "tls", "error").await >= 2.0 }).await;
    std::fs::write(&sc.config_path, "routes: [ this is not yaml").unwrap();
    eventually(2, || async { reloads(&sc, "config", "error").await >= 1.0 }).await;
    assert_eq!(
        served_cert(&pki, &sc).await,
        before,
        "the last good certificate keeps serving"
    );
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
    let (ok, failures) = load.finish().await;
    assert!(failures.is_empty(), "{:?}", failures.first());
    assert!(ok > 10);
    let _ = good_cert;
    sc.stop().await;
}

#[tokio::test]
async fn kubernetes_symlink_swap_is_picked_up() {
    let pki = Pki::new();
    let be = echo().await;
    // The layout kubelet makes: tls/..2026_a/{tls.crt,tls.key}, tls/..data -> ..2026_a, tls/tls.crt -> ..data/tls.crt
    let tls = pki.path().join("tls");
    let v1 = tls.join("..2026_a");
    std::fs::create_dir_all(&v1).unwrap();
    std::fs::write(v1.join("tls.crt"), &pki.server.cert_pem).unwrap();
    std::fs::write(v1.join("tls.key"), &pki.server.key_pem).unwrap();
    std::os::unix::fs::symlink("..2026_a", tls.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/tls.crt", tls.join("tls.crt")).unwrap();
    std::os::unix::fs::symlink("..data/tls.key", tls.join("tls.key")).unwrap();
    let yaml = YAML
        .replace("cert: server.crt", "cert: tls/tls.crt")
        .replace("key: server.key", "key: tls/tls.key")
        .replace("200ms", "1h");
    let sc = Sidecar::start(&pki, be.addr, &yaml).await;
    let load = Load::start(client(&pki, &sc, Some(&pki.client)), sc.url("/"), 3);
    let fresh = pki.ca.server("countersign-3", &[]).unwrap();
    let v2 = tls.join("..2026_b");
    std::fs::create_dir_all(&v2).unwrap();
    std::fs::write(v2.join("tls.crt"), &fresh.cert_pem).unwrap();
    std::fs::write(v2.join("tls.key"), &fresh.key_pem).unwrap();
    std::os::unix::fs::symlink("..2026_b", tls.join("..data_tmp")).unwrap();
    std::fs::rename(tls.join("..data_tmp"), tls.join("..data")).unwrap();
    std::fs::remove_dir_all(&v1).unwrap();
    // poll_interval is an hour here: only the directory event can make this pass.
    let want = ring::digest::digest(&ring::digest::SHA256, &fresh.der)
        .as_ref()
        .to_vec();
    eventually(2, || async { served_cert(&pki, &sc).await == want }).await;
    let (_, failures) = load.finish().await;
    assert!(failures.is_empty(), "{:?}", failures.first());
    sc.stop().await;
}
