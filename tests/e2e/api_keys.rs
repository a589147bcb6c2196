//! API keys through the running sidecar: a key made by `countersign keygen --alg api-key` (the
//! binary, its output used as printed), right, wrong, missing, revoked by a reload, limited by
//! its own `ip_allow`, outside its validity, in a custom header, and `[ip, api_key]`. The client
//! IP comes from `X-Forwarded-For` sent by a trusted loopback proxy, so tests can act from any
//! address.

use crate::support::*;

fn sha256_hex(s: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, s.as_bytes()))
}

/// Runs `countersign keygen --alg api-key --id ID`; returns the printed key and registry entry.
fn keygen(id: &str) -> (String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["keygen", "--alg", "api-key", "--id", id])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let key = text
        .lines()
        .find_map(|l| l.strip_prefix("API key: "))
        .unwrap_or_else(|| panic!("no key printed:\n{text}"))
        .to_string();
    let entry = text
        .split_once("keys.yaml entry:\nkeys:\n")
        .unwrap_or_else(|| panic!("no registry entry printed:\n{text}"))
        .1
        .to_string();
    (key, entry)
}

fn registry(entries: &[&str]) -> String {
    format!("keys:\n{}", entries.concat())
}

fn entry(id: &str, key: &str, extra: &str) -> String {
    format!(
        "  - id: {id}\n    api_key_sha256: {}\n{extra}",
        sha256_hex(key)
    )
}

const HEAD: &str = "upstream: http://{UP}\nkeys: keys.yaml\nclient_ip:\n  from: x_forwarded_for\n  trusted_proxies: [127.0.0.0/8]\nip_allow: [203.0.113.0/24]\nreload:\n  poll_interval: 200ms\n";

#[tokio::test]
async fn api_keys_from_keygen_right_wrong_missing_revoked_and_limited() {
    let (key, printed_entry) = keygen("batch-job");
    assert!(key.starts_with("csk_") && key.len() > 40, "{key}");
    assert!(
        printed_entry.contains(&format!("api_key_sha256: {}", sha256_hex(&key))),
        "the printed hash is the SHA-256 of the printed key:\n{printed_entry}"
    );
    assert!(
        !printed_entry.contains(&key),
        "the key itself stays out of the registry"
    );
    let others = [
        entry("net-job", "net-job-key", "    ip_allow: [203.0.113.0/24]\n"),
        entry(
            "old-job",
            "old-job-key",
            "    not_after: 2001-01-01T00:00:00Z\n",
        ),
        entry(
            "future-job",
            "future-job-key",
            "    not_before: 2999-01-01T00:00:00Z\n",
        ),
        "  - id: k1\n    algorithm: hmac-sha256\n    secret: \"an-hmac-secret-not-a-key\"\n"
            .to_string(),
    ];
    let pki = Pki::new();
    let mut all: Vec<&str> = vec![&printed_entry];
    all.extend(others.iter().map(String::as_str));
    pki.write("keys.yaml", &registry(&all));
    let be = counting_echo().await;
    let yaml = format!(
        "{HEAD}{TLS_MTLS}routes:\n  - path: /ipkey\n    require: [mtls, ip, api_key]\n  - path: /\n    require: [mtls, api_key]\n"
    );
    let sc = Sidecar::start(&pki, be.addr, &yaml).await;
    let c = client(&pki, &sc, Some(&pki.client));
    let get = |path: &str, key: Option<&str>, from: Option<&str>| {
        let mut rb = c.get(sc.url(path));
        if let Some(k) = key {
            rb = rb.header("X-Api-Key", k);
        }
        if let Some(ip) = from {
            rb = rb.header("X-Forwarded-For", ip);
        }
        reply(rb)
    };

    // The printed key works; the backend hears its id (a forged id header is replaced).
    let r = reply(
        c.get(sc.url("/jobs"))
            .header("X-Api-Key", &key)
            .header("X-Countersign-Key-Id", "admin"),
    )
    .await;
    let got = be.allowed(&r, "the keygen key");
    assert_eq!(echoed(got, "x-countersign-key-id"), ["batch-job"]);
    assert_eq!(
        echoed(got, "x-api-key"),
        [key.as_str()],
        "api_key.forward defaults to true"
    );

    // Wrong, missing, elsewhere, a signing secret, one character off.
    be.refused(
        &get("/jobs", Some("csk_wrong"), None).await,
        401,
        "api_key_invalid",
        "wrong key",
    );
    be.refused(
        &get("/jobs", None, None).await,
        401,
        "api_key_missing",
        "no key",
    );
    let r = reply(c.get(sc.url("/jobs")).bearer_auth(&key)).await;
    be.refused(&r, 401, "api_key_missing", "the key as a bearer token");
    let r = get("/jobs", Some("an-hmac-secret-not-a-key"), None).await;
    be.refused(&r, 401, "api_key_invalid", "a signing key's secret");
    let mut off = key.clone();
    off.pop();
    off.push(if key.ends_with('A') { 'B' } else { 'A' });
    be.refused(
        &get("/jobs", Some(&off), None).await,
        401,
        "api_key_invalid",
        "one character off",
    );

    // Validity dates.
    be.refused(
        &get("/jobs", Some("old-job-key"), None).await,
        401,
        "api_key_invalid",
        "not_after in the past",
    );
    be.refused(
        &get("/jobs", Some("future-job-key"), None).await,
        401,
        "api_key_invalid",
        "not_before in the future",
    );

    // The key's own ip_allow.
    let r = get("/jobs", Some("net-job-key"), Some("198.51.100.7")).await;
    be.refused(
        &r,
        403,
        "key_not_allowed_from_ip",
        "key used from outside its ip_allow",
    );
    let r = get("/jobs", Some("net-job-key"), None).await;
    be.refused(&r, 403, "key_not_allowed_from_ip", "key used from loopback");
    let r = get("/jobs", Some("net-job-key"), Some("203.0.113.9")).await;
    assert_eq!(
        be.allowed(&r, "key used inside its ip_allow")["headers"]["x-countersign-key-id"][0],
        "net-job"
    );

    // [ip, api_key]: both must pass, the route's ip_allow first.
    let r = get("/ipkey", Some(&key), Some("198.51.100.7")).await;
    be.refused(&r, 403, "ip_denied", "right key, wrong network");
    let r = get("/ipkey", Some("csk_wrong"), Some("203.0.113.5")).await;
    be.refused(&r, 401, "api_key_invalid", "right network, wrong key");
    let r = get("/ipkey", None, Some("203.0.113.5")).await;
    be.refused(&r, 401, "api_key_missing", "right network, no key");
    let r = get("/ipkey", Some(&key), Some("203.0.113.5")).await;
    let got = be.allowed(&r, "right network, right key");
    assert_eq!(echoed(got, "x-countersign-client-ip"), ["203.0.113.5"]);

    // Revoked: removed from the registry file, refused within 2 s; the other keys carry on.
    let before = reloads(&sc, "keys", "success").await;
    pki.write(
        "keys.yaml",
        &registry(&others.iter().map(String::as_str).collect::<Vec<_>>()),
    );
    eventually(2, || async {
        get("/jobs", Some(&key), None).await.status == 401
    })
    .await;
    be.sync();
    be.refused(
        &get("/jobs", Some(&key), None).await,
        401,
        "api_key_invalid",
        "revoked key",
    );
    let r = get("/jobs", Some("net-job-key"), Some("203.0.113.9")).await;
    be.allowed(&r, "another key after the revocation");
    assert!(reloads(&sc, "keys", "success").await > before);
    sc.stop().await;
}

#[tokio::test]
async fn a_custom_api_key_header() {
    let pki = Pki::new();
    pki.write("keys.yaml", &registry(&[&entry("edge", "edge-key-1", "")]));
    let be = counting_echo().await;
    let yaml = format!(
        "{HEAD}{TLS_MTLS}api_key:\n  header: X-Edge-Key\nroutes:\n  - path: /\n    require: [mtls, api_key]\n"
    );
    let sc = Sidecar::start(&pki, be.addr, &yaml).await;
    let c = client(&pki, &sc, Some(&pki.client));
    let r = reply(c.get(sc.url("/x")).header("X-Api-Key", "edge-key-1")).await;
    be.refused(
        &r,
        401,
        "api_key_missing",
        "the default header when another is configured",
    );
    let r = reply(c.get(sc.url("/x")).header("X-Edge-Key", "edge-key-2")).await;
    be.refused(
        &r,
        401,
        "api_key_invalid",
        "the configured header, wrong key",
    );
    let r = reply(c.get(sc.url("/x")).header("X-Edge-Key", "edge-key-1")).await;
    assert_eq!(
        be.allowed(&r, "the configured header")["headers"]["x-countersign-key-id"][0],
        "edge"
    );
    // Without a client certificate the handshake already fails (mtls is required first).
    let anon = client(&pki, &sc, None);
    assert!(
        anon.get(sc.url("/x"))
            .header("X-Edge-Key", "edge-key-1")
            .send()
            .await
            .is_err()
    );
    assert_eq!(be.hits(), 1);
    sc.stop().await;
}

#[tokio::test]
async fn forward_false_keeps_the_key_from_the_backend() {
    let pki = Pki::new();
    pki.write("keys.yaml", &registry(&[&entry("edge", "edge-key-1", "")]));
    let be = counting_echo().await;
    let yaml = format!(
        "{HEAD}{TLS_MTLS}api_key:\n  header: X-Edge-Key\n  forward: false\nroutes:\n  - path: /open\n    require: [mtls]\n  - path: /\n    require: [mtls, api_key]\n"
    );
    let sc = Sidecar::start(&pki, be.addr, &yaml).await;
    let c = client(&pki, &sc, Some(&pki.client));
    let r = reply(
        c.get(sc.url("/x"))
            .header("X-Edge-Key", "edge-key-1")
            .header("X-Api-Key", "not-the-configured-header"),
    )
    .await;
    let got = be.allowed(&r, "the right key");
    assert_eq!(echoed(got, "x-countersign-key-id"), ["edge"]);
    assert!(
        echoed(got, "x-edge-key").is_empty(),
        "the key reached the backend: {got}"
    );
    assert_eq!(
        echoed(got, "x-api-key"),
        ["not-the-configured-header"],
        "only the configured header is removed"
    );
    // Removed on routes that do not check it too: a key never reaches the backend.
    let r = reply(c.get(sc.url("/open/y")).header("X-Edge-Key", "edge-key-1")).await;
    let got = be.allowed(&r, "a route without api_key");
    assert!(echoed(got, "x-edge-key").is_empty(), "{got}");
    // A refusal is unchanged.
    let r = reply(c.get(sc.url("/x")).header("X-Edge-Key", "edge-key-2")).await;
    be.refused(&r, 401, "api_key_invalid", "a wrong key");
    sc.stop().await;
}
