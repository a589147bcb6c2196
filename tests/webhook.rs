//! The webhook as the API server meets it: a real HTTPS server on 127.0.0.1 with rcgen
//! certificates, real AdmissionReview bodies, and the returned JSONPatch applied to the pod.
//!
//! Set `COUNTERSIGN_PATCHED_POD_DIR` to a directory to have the injected pods written there as
//! JSON (`ci/k8s-checks.sh` validates them with kubernetes-validate).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::core::v1::Pod;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use tokio::sync::oneshot;

#[path = "common/h2_idle.rs"]
mod h2_idle;
use h2_idle::ends_gracefully_after;

use countersign::inject::config::WebhookConfig;
use countersign::inject::{WebhookArgs, serve};

const DNS: &str = "countersign-webhook.countersign.svc";

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn ca(name: &str) -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(p, key),
    }
}

/// A serving certificate for the webhook's Service name, signed by `ca`: (cert PEM, key PEM).
fn leaf(ca: &Ca) -> (String, String) {
    let p = CertificateParams::new(vec![DNS.to_string()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A TLS client configuration trusting `ca_pem`, offering `alpn`.
fn client_tls(ca_pem: &str, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tls
}

fn client(ca_pem: &str, addr: SocketAddr, http1_only: bool) -> reqwest::Client {
    let alpn: &[&[u8]] = if http1_only {
        &[b"http/1.1"]
    } else {
        &[b"h2", b"http/1.1"]
    };
    let tls = client_tls(ca_pem, alpn);
    let mut b = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .resolve(DNS, addr)
        .no_proxy()
        .timeout(Duration::from_secs(10));
    if http1_only {
        b = b.http1_only();
    }
    b.build().unwrap()
}

struct Webhook {
    addr: SocketAddr,
    ca: Ca,
    dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<Result<(), countersign::inject::WebhookError>>,
}

impl Webhook {
    fn url(&self, path: &str) -> String {
        format!("https://{DNS}:{}{path}", self.addr.port())
    }

    fn client(&self) -> reqwest::Client {
        client(&self.ca.pem, self.addr, false)
    }
}

async fn start(extra: &str) -> Webhook {
    let ca = ca("webhook test CA");
    let (cert, key) = leaf(&ca);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tls.crt"), cert).unwrap();
    std::fs::write(dir.path().join("tls.key"), key).unwrap();
    let cfg = format!(
        "listen: 127.0.0.1:0\ntls: {{cert: tls.crt, key: tls.key}}\nimage: ghcr.io/countersign/countersign:0.1.0\n{extra}"
    );
    let path = dir.path().join("webhook.yaml");
    std::fs::write(&path, cfg).unwrap();
    let config = WebhookConfig::load(&path).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let done = tokio::spawn(serve(config, listener, async {
        let _ = rx.await;
    }));
    Webhook {
        addr,
        ca,
        dir,
        stop: Some(tx),
        done,
    }
}

/// A pod as a ReplicaSet controller submits it, wrapped in an AdmissionReview the way the API
/// server sends it.
fn pod(annotations: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "orders-5f7c9d8b6-",
            "namespace": "shop",
            "labels": {"app": "orders", "pod-template-hash": "5f7c9d8b6"},
            "annotations": annotations,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": "orders-5f7c9d8b6", "uid": "7b0e3f4c-1d2a-4e5f-8a9b-0c1d2e3f4a5b",
                "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {
            "containers": [{
                "name": "orders",
                "image": "example/orders:1.4.2",
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "livenessProbe": {"httpGet": {"path": "/livez", "port": "http", "scheme": "HTTP"},
                    "periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3, "successThreshold": 1},
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080, "scheme": "HTTP"},
                    "periodSeconds": 5, "timeoutSeconds": 1, "failureThreshold": 3, "successThreshold": 1},
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent",
                "volumeMounts": [{"name": "kube-api-access-x7k2p", "readOnly": true,
                    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]
            }],
            "volumes": [{"name": "kube-api-access-x7k2p", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}
            ]}}],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "serviceAccount": "default",
            "securityContext": {},
            "schedulerName": "default-scheduler",
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                "effect": "NoExecute", "tolerationSeconds": 300}],
            "priority": 0,
            "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority"
        },
        "status": {}
    })
}

fn review(object: Value, operation: &str, resource: &str) -> Value {
    json!({
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": "3c9f6a8e-52b1-4d7e-9f0a-6b8c2d1e4f70",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": resource},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": resource},
            "namespace": "shop",
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller",
                "uid": "a1b2c3d4-0000-4000-8000-000000000001",
                "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"]},
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    })
}

async fn send(client: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let r = client.post(url).json(body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// The patch from a review response, applied to `object`.
fn apply(response: &Value, object: &Value) -> Value {
    assert_eq!(response["patchType"], "JSONPatch", "{response}");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(response["patch"].as_str().unwrap())
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&raw).unwrap();
    let mut out = object.clone();
    json_patch::patch(&mut out, &patch).unwrap();
    out
}

/// Writes the injected pod for kubernetes-validate, with the name the API server would give it
/// after admission (the validator wants one; webhooks see only `generateName`).
fn write_for_validation(name: &str, pod: &Value) {
    if let Ok(dir) = std::env::var("COUNTERSIGN_PATCHED_POD_DIR") {
        let mut pod = pod.clone();
        let generated = format!("{}x7k2p", pod["metadata"]["generateName"].as_str().unwrap());
        pod["metadata"]["name"] = json!(generated);
        let path = Path::new(&dir).join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(&pod).unwrap()).unwrap();
    }
}

#[tokio::test]
async fn an_opted_in_pod_gets_the_sidecar_over_h2_and_http1() {
    let wh = start("").await;
    let object =
        pod(json!({"countersign.dev/inject": "true", "countersign.dev/upstream-port": "8080"}));
    for http1 in [false, true] {
        let c = client(&wh.ca.pem, wh.addr, http1);
        let (status, body) = send(
            &c,
            &wh.url("/mutate"),
            &review(object.clone(), "CREATE", "pods"),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(body["kind"], "AdmissionReview");
        assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
        let resp = &body["response"];
        assert_eq!(resp["uid"], "3c9f6a8e-52b1-4d7e-9f0a-6b8c2d1e4f70");
        assert_eq!(resp["allowed"], true);
        let patched = apply(resp, &object);
        let typed: Pod = serde_json::from_value(patched.clone()).unwrap();
        let spec = typed.spec.unwrap();
        let sidecar = spec.init_containers.unwrap().pop().unwrap();
        assert_eq!(sidecar.name, "countersign");
        assert_eq!(sidecar.restart_policy.as_deref(), Some("Always"));
        assert!(
            sidecar
                .args
                .unwrap()
                .ends_with(&["--upstream".into(), "http://127.0.0.1:8080".into()])
        );
        let app = &spec.containers[0];
        let live = app
            .liveness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(live.path.as_deref(), Some("/app-health/orders/livez"));
        assert_eq!(
            typed.metadata.labels.unwrap()["countersign.dev/injected"],
            "true"
        );
        assert_eq!(
            patched["metadata"]["ownerReferences"],
            object["metadata"]["ownerReferences"]
        );
        write_for_validation("native-sidecar", &patched);
    }
}

#[tokio::test]
async fn a_plain_sidecar_for_old_clusters_by_annotation_or_setting() {
    let wh = start("").await;
    let object =
        pod(json!({"countersign.dev/inject": "true", "countersign.dev/native-sidecar": "false"}));
    let (_, body) = send(
        &wh.client(),
        &wh.url("/mutate"),
        &review(object.clone(), "CREATE", "pods"),
    )
    .await;
    let patched = apply(&body["response"], &object);
    let names: Vec<&str> = patched["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["orders", "countersign"]);
    assert!(patched["spec"].get("initContainers").is_none());
    write_for_validation("plain-sidecar", &patched);

    let old = start("native_sidecar: false\n").await;
    let object = pod(json!({"countersign.dev/inject": "true"}));
    let (_, body) = send(
        &old.client(),
        &old.url("/mutate"),
        &review(object.clone(), "CREATE", "pods"),
    )
    .await;
    let patched = apply(&body["response"], &object);
    assert_eq!(patched["spec"]["containers"][1]["name"], "countersign");
}

#[tokio::test]
async fn other_pods_pass_untouched() {
    let wh = start("").await;
    let c = wh.client();
    let injected = {
        let object = pod(json!({"countersign.dev/inject": "true"}));
        let (_, body) = send(
            &c,
            &wh.url("/mutate"),
            &review(object.clone(), "CREATE", "pods"),
        )
        .await;
        apply(&body["response"], &object)
    };
    for object in [
        pod(json!({})),
        pod(json!({"countersign.dev/inject": "false"})),
        injected,
    ] {
        let (status, body) = send(&c, &wh.url("/mutate"), &review(object, "CREATE", "pods")).await;
        assert_eq!(status, 200);
        let resp = &body["response"];
        assert_eq!(resp["allowed"], true, "{resp}");
        assert!(resp.get("patch").is_none(), "{resp}");
        assert!(resp.get("patchType").is_none(), "{resp}");
    }
    let opted_in = pod(json!({"countersign.dev/inject": "true"}));
    for (op, resource) in [
        ("UPDATE", "pods"),
        ("CREATE", "pods/ephemeralcontainers"),
        ("CREATE", "services"),
    ] {
        let (status, body) = send(
            &c,
            &wh.url("/mutate"),
            &review(opted_in.clone(), op, resource),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(body["response"]["allowed"], true);
        assert!(body["response"].get("patch").is_none(), "{op} {resource}");
    }
}

#[tokio::test]
async fn a_bad_annotation_is_refused_with_its_name() {
    let wh = start("").await;
    let c = wh.client();
    for (annotations, named) in [
        (
            json!({"countersign.dev/inject": "yes"}),
            "countersign.dev/inject",
        ),
        (
            json!({"countersign.dev/inject": "true", "countersign.dev/upstream-port": "http"}),
            "countersign.dev/upstream-port",
        ),
        (
            json!({"countersign.dev/inject": "true", "countersign.dev/tls-secret": "My_Secret"}),
            "countersign.dev/tls-secret",
        ),
    ] {
        let (status, body) = send(
            &c,
            &wh.url("/mutate"),
            &review(pod(annotations), "CREATE", "pods"),
        )
        .await;
        assert_eq!(status, 200);
        let resp = &body["response"];
        assert_eq!(resp["allowed"], false);
        assert_eq!(resp["uid"], "3c9f6a8e-52b1-4d7e-9f0a-6b8c2d1e4f70");
        let msg = resp["status"]["message"].as_str().unwrap();
        assert!(
            msg.starts_with(&format!("countersign: annotation {named}: ")),
            "{msg}"
        );
        assert_eq!(resp["status"]["code"], 400);
        assert!(resp.get("patch").is_none());
    }
}

#[tokio::test]
async fn malformed_and_oversized_bodies_are_refused() {
    let wh = start("").await;
    let c = wh.client();
    let r = c
        .post(wh.url("/mutate"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["response"]["allowed"], false);

    let r = c
        .post(wh.url("/mutate"))
        .json(&json!({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "a review without a request");

    let big = vec![b' '; countersign::inject::MAX_BODY_BYTES + 1];
    let r = c.post(wh.url("/mutate")).body(big).send().await.unwrap();
    assert_eq!(r.status(), 413);

    let r = c.get(wh.url("/mutate")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let r = c.get(wh.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_ca_cannot_connect() {
    let wh = start("").await;
    let other = ca("some other CA");
    let c = client(&other.pem, wh.addr, false);
    assert!(c.get(wh.url("/healthz")).send().await.is_err());
}

#[tokio::test]
async fn a_rotated_certificate_is_served_without_restart() {
    let wh = start("reload_interval: 100ms\n").await;
    let next = ca("rotated CA");
    let (cert, key) = leaf(&next);
    assert!(
        client(&next.pem, wh.addr, true)
            .get(wh.url("/healthz"))
            .send()
            .await
            .is_err()
    );

    std::fs::write(wh.dir.path().join("tls.key"), "not a key").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = wh.client().get(wh.url("/healthz")).send().await.unwrap();
    assert_eq!(
        r.status(),
        200,
        "a broken key keeps the last good certificate"
    );

    std::fs::write(wh.dir.path().join("tls.crt"), cert).unwrap();
    std::fs::write(wh.dir.path().join("tls.key"), key).unwrap();
    let mut served = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if client(&next.pem, wh.addr, true)
            .get(wh.url("/healthz"))
            .send()
            .await
            .is_ok()
        {
            served = true;
            break;
        }
    }
    assert!(served, "the rotated certificate was never served");
    assert!(
        client(&wh.ca.pem, wh.addr, true)
            .get(wh.url("/healthz"))
            .send()
            .await
            .is_err()
    );
}

/// A TLS connection to the webhook with `alpn` offered, nothing sent on it yet.
async fn tls_to(
    wh: &Webhook,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(wh.addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(client_tls(&wh.ca.pem, alpn)))
        .connect(rustls::pki_types::ServerName::try_from(DNS).unwrap(), tcp)
        .await
        .unwrap()
}

/// `GET /healthz` on an HTTP/2 connection: the status.
async fn h2_healthz(send: &mut h2::client::SendRequest<bytes::Bytes>) -> u16 {
    let req = http::Request::get(format!("https://{DNS}/healthz"))
        .body(())
        .unwrap();
    let mut ready = send.clone().ready().await.unwrap();
    let (resp, _) = ready.send_request(req, true).unwrap();
    let resp = resp.await.unwrap();
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    status
}

/// The API server keeps its HTTP/2 connections open between reviews; one left with no review for
/// `idle_timeout` is closed with a GOAWAY (it held one of the webhook's connection slots for ever),
/// never while reviews keep coming.
#[tokio::test]
async fn an_idle_h2_connection_is_closed_after_idle_timeout() {
    const IDLE: Duration = Duration::from_millis(500);
    let wh = start("idle_timeout: 500ms\n").await;
    let tls = tls_to(&wh, &[b"h2"]).await;
    let (mut send, conn) = h2::client::handshake(tls).await.unwrap();
    let mut conn = tokio::spawn(conn);
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(h2_healthz(&mut send).await, 200);
    }
    assert!(!conn.is_finished(), "closed while requests kept coming");
    ends_gracefully_after(&mut conn, IDLE).await;
    let status = wh
        .client()
        .get(wh.url("/healthz"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
}

/// A TLS connection that agreed on h2 and never sends the preface, or on HTTP/1.1 and never sends
/// a request, is closed too: each would otherwise hold a connection slot for ever.
#[tokio::test]
async fn a_tls_connection_that_sends_nothing_is_closed() {
    let wh = start("idle_timeout: 300ms\n").await;
    for alpn in [&b"h2"[..], b"http/1.1"] {
        let mut tls = tls_to(&wh, &[alpn]).await;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
        let mut got = Vec::new();
        let closed = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncReadExt::read_to_end(&mut tls, &mut got),
        )
        .await;
        assert!(
            closed.is_ok(),
            "a silent {} connection was kept open",
            String::from_utf8_lossy(alpn)
        );
    }
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let mut wh = start("").await;
    assert_eq!(
        wh.client()
            .get(wh.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    wh.stop.take().unwrap().send(()).unwrap();
    let r = tokio::time::timeout(Duration::from_secs(20), &mut wh.done).await;
    assert!(matches!(r, Ok(Ok(Ok(())))), "{r:?}");
    assert!(tokio::net::TcpStream::connect(wh.addr).await.is_err());
}

/// On shutdown, a review still arriving is answered, while keep-alive connections with nothing
/// open (HTTP/1.1 and HTTP/2) are closed at once rather than waited on until `idle_timeout` or
/// `shutdown_timeout`.
#[tokio::test]
async fn shutdown_finishes_an_open_review_and_closes_idle_connections() {
    let mut wh = start("shutdown_timeout: 30s\nidle_timeout: 30s\n").await;
    let (h1, h2) = (client(&wh.ca.pem, wh.addr, true), wh.client());
    for c in [&h1, &h2] {
        let r = c.get(wh.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    let body = serde_json::to_vec(&review(
        pod(json!({"countersign.dev/inject": "true"})),
        "CREATE",
        "pods",
    ))
    .unwrap();
    let (half, rest) = body.split_at(body.len() / 2);
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(2);
    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
        let b = rx.recv().await?;
        Some((Ok::<_, std::io::Error>(http_body::Frame::data(b)), rx))
    });
    let review = tokio::spawn(
        h2.post(wh.url("/mutate"))
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap(http_body_util::StreamBody::new(frames)))
            .send(),
    );
    tx.send(bytes::Bytes::copy_from_slice(half)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = std::time::Instant::now();
    wh.stop.take().unwrap().send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !wh.done.is_finished(),
        "the drain did not wait for the review"
    );
    tx.send(bytes::Bytes::copy_from_slice(rest)).await.unwrap();
    drop(tx);
    let answered = review.await.unwrap().unwrap();
    assert_eq!(answered.status(), 200);
    let answer: Value = answered.json().await.unwrap();
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    let r = tokio::time::timeout(Duration::from_secs(20), &mut wh.done).await;
    assert!(matches!(r, Ok(Ok(Ok(())))), "{r:?}");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "the drain took {took:?}: idle connections were waited on"
    );
}

#[tokio::test]
async fn an_invalid_config_or_certificate_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("webhook.yaml");
    std::fs::write(&path, "listen: 127.0.0.1:0\nimage: x\n").unwrap();
    let code = countersign::inject::run(WebhookArgs {
        config: path.clone(),
        log_format: None,
    })
    .await;
    assert_eq!(code, std::process::ExitCode::from(2));

    std::fs::write(
        &path,
        "listen: 127.0.0.1:0\ntls: {cert: missing.crt, key: missing.key}\nimage: x\n",
    )
    .unwrap();
    let code = countersign::inject::run(WebhookArgs {
        config: path.clone(),
        log_format: None,
    })
    .await;
    assert_eq!(
        code,
        std::process::ExitCode::from(2),
        "a missing certificate"
    );
}

/// The webhook configurations the Helm chart renders load without a problem.
/// `ci/k8s-checks.sh` sets `COUNTERSIGN_WEBHOOK_CONFIG_DIR` to the configs it extracted from
/// every rendered case; without it, the contract's example is loaded.
#[test]
fn rendered_webhook_configs_load() {
    let scratch = tempfile::tempdir().unwrap();
    let files: Vec<std::path::PathBuf> = match std::env::var("COUNTERSIGN_WEBHOOK_CONFIG_DIR") {
        Ok(dir) => std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect(),
        Err(_) => {
            let p = scratch.path().join("webhook.yaml");
            std::fs::write(
                &p,
                "listen: 0.0.0.0:9443\ntls: {cert: tls.crt, key: tls.key}\nimage: ghcr.io/countersign/countersign:0.1.0\nnative_sidecar: true\n",
            )
            .unwrap();
            vec![p]
        }
    };
    assert!(!files.is_empty(), "no webhook configs to load");
    for f in files {
        let c = WebhookConfig::load(&f).unwrap_or_else(|e| panic!("{}:\n{e}", f.display()));
        assert_eq!(c.inject.listen_port, 8443, "{}", f.display());
    }
}
