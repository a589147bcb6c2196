//! Client IP from the peer, X-Forwarded-For and the PROXY protocol; `ip_allow`; a client
//! certificate passed by a trusted proxy on a plain listener.

use crate::support::*;

#[tokio::test]
async fn ip_allow_admits_and_refuses() {
    let pki = Pki::new();
    let be = echo().await;
    let base = format!(
        "upstream: http://{{UP}}\n{TLS_MTLS}routes:\n  - path: /\n    require: [mtls, ip]\n"
    );
    let sc = Sidecar::start(
        &pki,
        be.addr,
        &format!("{base}ip_allow: [127.0.0.0/8, \"2001:db8::/32\"]\n"),
    )
    .await;
    assert_eq!(
        client(&pki, &sc, Some(&pki.client))
            .get(sc.url("/"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    sc.stop().await;
    let sc = Sidecar::start(&pki, be.addr, &format!("{base}ip_allow: [10.0.0.0/8]\n")).await;
    let r = client(&pki, &sc, Some(&pki.client))
        .get(sc.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"],
        "ip_denied"
    );
    sc.stop().await;
}

#[tokio::test]
async fn x_forwarded_for_from_a_trusted_proxy_is_walked_right_to_left() {
    let pki = Pki::new();
    let be = echo().await;
    let yaml = format!(
        "upstream: http://{{UP}}\n{TLS_MTLS}client_ip:\n  from: x_forwarded_for\n  trusted_proxies: [127.0.0.0/8]\nip_allow: [203.0.113.0/24]\nroutes:\n  - path: /\n    require: [mtls, ip]\n"
    );
    let sc = Sidecar::start(&pki, be.addr, &yaml).await;
    let c = client(&pki, &sc, Some(&pki.client));
    let r = c
        .get(sc.url("/"))
        .header("X-Forwarded-For", "203.0.113.5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(echoed(&v, "x-countersign-client-ip"), ["203.0.113.5"]);
    // A client-forged left part is never used: the proxy appended the real address.
    let r = c
        .get(sc.url("/"))
        .header("X-Forwarded-For", "203.0.113.5, 198.51.100.7")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"],
        "ip_denied"
    );
    // Garbage appended by a trusted hop is a malformed request.
    let r = c
        .get(sc.url("/"))
        .header("X-Forwarded-For", "not-an-ip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    sc.stop().await;
}

#[tokio::test]
async fn x_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let pki = Pki::new();
    let be = echo().await;
    let yaml = format!(
        "upstream: http://{{UP}}\n{TLS_MTLS}client_ip:\n  from: x_forwarded_for\n  trusted_proxies: [10.0.0.0/8]\nip_allow: [203.0.113.0/24]\nroutes:\n  - path: /\n    require: [mtls, ip]\n"
    );
    let sc = Sidecar::start(&pki, be.addr, &yaml).await;
    let r = client(&pki, &sc, Some(&pki.client))
        .get(sc.url("/"))
        .header("X-Forwarded-For", "203.0.113.5")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        403,
        "a forged XFF from 127.0.0.1 must not be believed"
    );
    sc.stop().await;
}

#[tokio::test]
async fn proxy_protocol_v1_and_v2_give_the_client_ip_and_are_required() {
    let pki = Pki::new();
    let be = echo().await;
    let yaml = format!(
        "upstream: http://{{UP}}\n{TLS_MTLS}client_ip:\n  from: proxy_protocol\nip_allow: [203.0.113.0/24, \"2001:db8::/32\"]\nroutes:\n  - path: /\n    require: [mtls, ip]\n"
    );
    let sc = Sidecar::start(&pki, be.addr, &yaml).await;
    let req = b"GET /pp HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let v1 = b"PROXY TCP4 203.0.113.9 10.0.0.1 51000 443\r\n";
    let raw = raw_tls(&pki, sc.addr, Some(&pki.client), v1, req)
        .await
        .unwrap();
    assert_eq!(status_of(&raw), 200, "{raw}");
    assert_eq!(
        echoed(&json_of(&raw), "x-countersign-client-ip"),
        ["203.0.113.9"]
    );

    let v2 = countersign::proxy_protocol::encode_v2(
        "[2001:db8::7]:40000".parse().unwrap(),
        "[2001:db8::1]:443".parse().unwrap(),
    );
    let raw = raw_tls(&pki, sc.addr, Some(&pki.client), &v2, req)
        .await
        .unwrap();
    assert_eq!(status_of(&raw), 200, "{raw}");
    assert_eq!(
        echoed(&json_of(&raw), "x-countersign-client-ip"),
        ["2001:db8::7"]
    );

    // A source outside ip_allow is refused per request.
    let v1_out = b"PROXY TCP4 198.51.100.9 10.0.0.1 51000 443\r\n";
    let raw = raw_tls(&pki, sc.addr, Some(&pki.client), v1_out, req)
        .await
        .unwrap();
    assert_eq!(status_of(&raw), 403);

    // Without the header the connection is refused before TLS.
    assert!(
        raw_tls(&pki, sc.addr, Some(&pki.client), b"", req)
            .await
            .is_err()
    );
    sc.stop().await;
}

#[tokio::test]
async fn forged_proxy_header_is_refused_when_proxy_protocol_is_off() {
    let pki = Pki::new();
    let be = echo().await;
    let sc = Sidecar::start(&pki, be.addr, &format!("upstream: http://{{UP}}\n{TLS_MTLS}ip_allow: [203.0.113.0/24]\nroutes:\n  - path: /\n    require: [mtls, ip]\n")).await;
    let raw = raw_tls(
        &pki,
        sc.addr,
        Some(&pki.client),
        b"PROXY TCP4 203.0.113.9 10.0.0.1 51000 443\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        raw.is_err(),
        "a PROXY header on a TLS listener that does not expect one breaks the handshake"
    );
    sc.stop().await;
}

#[tokio::test]
async fn client_cert_header_is_accepted_from_trusted_proxies_only() {
    let pki = Pki::new();
    let be = echo().await;
    let b64 = |d: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, d);
    let good = format!(":{}:", b64(&pki.client.der));
    let foreign = format!(":{}:", b64(&pki.foreign.der));
    let mk = |trusted: &str| {
        format!(
            "listen: 127.0.0.1:0\nupstream: http://{{UP}}\ntls:\n  client_ca: ca.crt\n  crl: [crl.pem]\n  allow_clients:\n    - subject_cn: tyk-edge\nclient_ip:\n  trusted_proxies: [{trusted}]\n  client_cert_header: Client-Cert\nroutes:\n  - path: /\n    require: [mtls]\n"
        )
    };
    let sc = Sidecar::start(&pki, be.addr, &mk("127.0.0.1/32")).await;
    let c = plain_client();
    let r = c
        .get(sc.plain_url("/"))
        .header("Client-Cert", &good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(echoed(&v, "x-countersign-cert-subject"), ["CN=tyk-edge"]);
    assert!(
        echoed(&v, "client-cert").is_empty(),
        "the passed certificate is not forwarded"
    );
    // A certificate from another CA is refused even from a trusted proxy.
    let r = c
        .get(sc.plain_url("/"))
        .header("Client-Cert", &foreign)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // No certificate at all.
    assert_eq!(c.get(sc.plain_url("/")).send().await.unwrap().status(), 403);
    sc.stop().await;

    let sc = Sidecar::start(&pki, be.addr, &mk("10.0.0.0/8")).await;
    let r = c
        .get(sc.plain_url("/"))
        .header("Client-Cert", &good)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        403,
        "Client-Cert from an untrusted peer must be ignored"
    );
    sc.stop().await;
}
