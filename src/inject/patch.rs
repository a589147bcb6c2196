//! Pod + settings → JSONPatch: the pure half of the sidecar injector.
//!
//! [`build_patch`] decides from the pod's annotations whether to inject, builds the injected pod
//! as typed structs (the sidecar container, its volumes, the rewritten app probes, the label) and
//! returns the RFC 6902 difference between the pod as received and as injected. No I/O.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, HTTPGetAction, Pod,
    Probe, ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::probes::{APP_PROBES_ENV, AppProbe, MAX_TIMEOUT_SECONDS, ProbeHeader, Scheme};

/// Opts a pod in (`"true"`) or out (`"false"`); also read as a label.
pub const ANNOTATION_INJECT: &str = "countersign.dev/inject";
/// `"true"`: the sidecar as a native sidecar (an init container with `restartPolicy: Always`);
/// `"false"`: a plain container, for clusters older than 1.29.
pub const ANNOTATION_NATIVE_SIDECAR: &str = "countersign.dev/native-sidecar";
/// The ConfigMap holding `countersign.yaml`.
pub const ANNOTATION_CONFIG: &str = "countersign.dev/config";
/// The Secret holding the sidecar's TLS certificate, key and client CA.
pub const ANNOTATION_TLS_SECRET: &str = "countersign.dev/tls-secret";
/// The Secret holding the key registry and its secrets.
pub const ANNOTATION_KEYS_SECRET: &str = "countersign.dev/keys-secret";
/// The app's port on loopback, passed to the sidecar as `--upstream http://127.0.0.1:PORT`.
pub const ANNOTATION_UPSTREAM_PORT: &str = "countersign.dev/upstream-port";
/// `"false"` leaves the app's `httpGet` probes as they are.
pub const ANNOTATION_REWRITE_PROBES: &str = "countersign.dev/rewrite-probes";
/// The label every injected pod carries (what the NetworkPolicy selects).
pub const LABEL_INJECTED: &str = "countersign.dev/injected";

/// The injected container's name.
pub const CONTAINER_NAME: &str = "countersign";
/// Where the ConfigMap is mounted.
pub const CONFIG_DIR: &str = "/etc/countersign/config";
/// Where the TLS Secret is mounted.
pub const TLS_DIR: &str = "/etc/countersign/tls";
/// Where the keys Secret is mounted.
pub const KEYS_DIR: &str = "/etc/countersign/keys";
/// The config file the sidecar runs with (a key of the ConfigMap).
pub const CONFIG_FILE: &str = "/etc/countersign/config/countersign.yaml";
/// The name of the sidecar's listening port.
pub const PORT_NAME: &str = "countersign";
/// The name of the sidecar's admin port.
pub const ADMIN_PORT_NAME: &str = "cs-admin";

const VOLUME_CONFIG: &str = "countersign-config";
const VOLUME_TLS: &str = "countersign-tls";
const VOLUME_KEYS: &str = "countersign-keys";
const MAX_ECHOED: usize = 64;

/// What the webhook injects, from its configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct InjectSettings {
    /// The sidecar image.
    pub image: String,
    /// The image pull policy, when set.
    pub image_pull_policy: Option<String>,
    /// Native sidecar unless a pod says otherwise.
    pub native_sidecar: bool,
    /// The sidecar's TLS port (the config's `listen`).
    pub listen_port: u16,
    /// The sidecar's admin port, bound to 0.0.0.0 in the pod.
    pub admin_port: u16,
    /// The ConfigMap used when a pod names none.
    pub config_map: String,
    /// The TLS Secret used when a pod names none.
    pub tls_secret: String,
    /// The keys Secret used when a pod names none.
    pub keys_secret: String,
    /// The sidecar's resource requests and limits.
    pub resources: ResourceRequirements,
    /// The sidecar's UID and GID.
    pub run_as_user: i64,
    /// The sidecar's `--log-format`.
    pub log_format: String,
    /// Rewrite app `httpGet` probes unless a pod says otherwise.
    pub rewrite_probes: bool,
}

/// Why a pod is let through unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// No `countersign.dev/inject` annotation or label.
    NotOptedIn,
    /// `countersign.dev/inject: "false"`.
    OptedOut,
    /// The pod already carries the injected label or a `countersign` container.
    AlreadyInjected,
}

impl Skip {
    /// A short word for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::NotOptedIn => "not_opted_in",
            Skip::OptedOut => "opted_out",
            Skip::AlreadyInjected => "already_injected",
        }
    }
}

/// What to do with a pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Admit it unchanged.
    Skip(Skip),
    /// Admit it with this patch.
    Inject(json_patch::Patch),
}

/// Why a pod is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// An annotation (or the inject label) has a value that cannot be used.
    #[error("annotation {annotation}: `{value}` {why}")]
    BadAnnotation {
        /// The annotation's key.
        annotation: &'static str,
        /// The value as given (cut short when long).
        value: String,
        /// What is wrong with it.
        why: String,
    },
    /// The pod already uses a name or port the sidecar needs.
    #[error("{0}")]
    Conflict(String),
    /// The pod has no `spec.containers`: it is invalid, and a patch computed against the
    /// defaulted empty list would not apply to it as received.
    #[error("the pod has no containers (spec.containers is required)")]
    NoContainers,
    /// The pod could not be turned into JSON (never expected of a typed pod).
    #[error("cannot serialize the pod: {0}")]
    Serialize(String),
    /// An app probe cannot be forwarded.
    #[error("container {container}: {probe}: {why}")]
    BadProbe {
        /// The container's name.
        container: String,
        /// `livenessProbe`, `readinessProbe` or `startupProbe`.
        probe: &'static str,
        /// What is wrong.
        why: String,
    },
}

/// Decides whether and how to inject `pod`; the patch applies to the pod as received.
pub fn build_patch(pod: &Pod, s: &InjectSettings) -> Result<Outcome, PatchError> {
    let meta = &pod.metadata;
    let annotations = meta.annotations.as_ref();
    let labels = meta.labels.as_ref();
    let annotation = |k: &str| annotations.and_then(|a| a.get(k)).map(String::as_str);

    let opt_in = match annotation(ANNOTATION_INJECT).or_else(|| {
        labels
            .and_then(|l| l.get(ANNOTATION_INJECT))
            .map(String::as_str)
    }) {
        None => return Ok(Outcome::Skip(Skip::NotOptedIn)),
        Some(v) => boolean(ANNOTATION_INJECT, v)?,
    };
    if !opt_in {
        return Ok(Outcome::Skip(Skip::OptedOut));
    }
    let spec = pod.spec.as_ref();
    let has_sidecar = spec.is_some_and(|sp| {
        sp.containers
            .iter()
            .chain(sp.init_containers.iter().flatten())
            .any(|c| c.name == CONTAINER_NAME)
    });
    if labels.is_some_and(|l| l.contains_key(LABEL_INJECTED)) || has_sidecar {
        return Ok(Outcome::Skip(Skip::AlreadyInjected));
    }

    let native = match annotation(ANNOTATION_NATIVE_SIDECAR) {
        Some(v) => boolean(ANNOTATION_NATIVE_SIDECAR, v)?,
        None => s.native_sidecar,
    };
    let rewrite = match annotation(ANNOTATION_REWRITE_PROBES) {
        Some(v) => boolean(ANNOTATION_REWRITE_PROBES, v)?,
        None => s.rewrite_probes,
    };
    let config_map = object_name(
        ANNOTATION_CONFIG,
        annotation(ANNOTATION_CONFIG),
        &s.config_map,
    )?;
    let tls_secret = object_name(
        ANNOTATION_TLS_SECRET,
        annotation(ANNOTATION_TLS_SECRET),
        &s.tls_secret,
    )?;
    let keys_secret = object_name(
        ANNOTATION_KEYS_SECRET,
        annotation(ANNOTATION_KEYS_SECRET),
        &s.keys_secret,
    )?;
    let upstream_port = match annotation(ANNOTATION_UPSTREAM_PORT) {
        None => None,
        Some(v) => Some(upstream_port(v, s)?),
    };

    if pod.spec.as_ref().is_none_or(|sp| sp.containers.is_empty()) {
        return Err(PatchError::NoContainers);
    }
    let before = serde_json::to_value(pod).map_err(|e| PatchError::Serialize(e.to_string()))?;
    let mut out = pod.clone();
    let spec = out.spec.get_or_insert_with(Default::default);
    check_conflicts(spec, s)?;

    let mut app_probes = BTreeMap::new();
    if rewrite {
        for c in &mut spec.containers {
            rewrite_probes(c, s.admin_port, &mut app_probes)?;
        }
    }

    let sidecar = sidecar(s, native, upstream_port, &app_probes)?;
    if native {
        spec.init_containers
            .get_or_insert_with(Vec::new)
            .push(sidecar);
    } else {
        spec.containers.push(sidecar);
    }
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    volumes.push(Volume {
        name: VOLUME_CONFIG.into(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map,
            ..Default::default()
        }),
        ..Default::default()
    });
    for (name, secret) in [(VOLUME_TLS, tls_secret), (VOLUME_KEYS, keys_secret)] {
        volumes.push(Volume {
            name: name.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    out.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(LABEL_INJECTED.into(), "true".into());

    let after = serde_json::to_value(&out).map_err(|e| PatchError::Serialize(e.to_string()))?;
    Ok(Outcome::Inject(json_patch::diff(&before, &after)))
}

fn echoed(v: &str) -> String {
    match v.char_indices().nth(MAX_ECHOED) {
        Some((i, _)) => format!("{}...", &v[..i]),
        None => v.to_string(),
    }
}

fn bad(annotation: &'static str, value: &str, why: impl Into<String>) -> PatchError {
    PatchError::BadAnnotation {
        annotation,
        value: echoed(value),
        why: why.into(),
    }
}

fn boolean(annotation: &'static str, v: &str) -> Result<bool, PatchError> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(bad(annotation, v, "is not \"true\" or \"false\"")),
    }
}

/// Checks a ConfigMap or Secret name (an RFC 1123 subdomain).
pub fn is_object_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 253
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'.')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

fn object_name(
    annotation: &'static str,
    given: Option<&str>,
    default: &str,
) -> Result<String, PatchError> {
    match given {
        None => Ok(default.to_string()),
        Some(v) if is_object_name(v) => Ok(v.to_string()),
        Some(v) => Err(bad(
            annotation,
            v,
            "is not a valid object name (lower-case letters, digits, '-' and '.')",
        )),
    }
}

fn upstream_port(v: &str, s: &InjectSettings) -> Result<u16, PatchError> {
    let port = match v.parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => return Err(bad(ANNOTATION_UPSTREAM_PORT, v, "is not a port (1-65535)")),
    };
    if port == s.listen_port || port == s.admin_port {
        return Err(bad(
            ANNOTATION_UPSTREAM_PORT,
            v,
            format!(
                "is the sidecar's own port ({} and {} are taken)",
                s.listen_port, s.admin_port
            ),
        ));
    }
    Ok(port)
}

fn check_conflicts(
    spec: &k8s_openapi::api::core::v1::PodSpec,
    s: &InjectSettings,
) -> Result<(), PatchError> {
    for v in spec.volumes.iter().flatten() {
        if [VOLUME_CONFIG, VOLUME_TLS, VOLUME_KEYS].contains(&v.name.as_str()) {
            return Err(PatchError::Conflict(format!(
                "volume name {} is reserved for the countersign sidecar",
                v.name
            )));
        }
    }
    let all = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for c in all {
        for p in c.ports.iter().flatten() {
            let port = p.container_port;
            if port == i32::from(s.listen_port) || port == i32::from(s.admin_port) {
                return Err(PatchError::Conflict(format!(
                    "container {} declares port {port}, which the countersign sidecar uses",
                    c.name
                )));
            }
            if let Some(n) = &p.name
                && (n == PORT_NAME || n == ADMIN_PORT_NAME)
            {
                return Err(PatchError::Conflict(format!(
                    "container {} declares a port named {n}, which the countersign sidecar uses",
                    c.name
                )));
            }
        }
    }
    Ok(())
}

/// The path the kubelet is sent to for an app probe.
pub fn app_health_path(container: &str, probe: &str) -> String {
    format!("/app-health/{container}/{probe}")
}

fn rewrite_probes(
    c: &mut Container,
    admin_port: u16,
    out: &mut BTreeMap<String, AppProbe>,
) -> Result<(), PatchError> {
    let ports = c.ports.clone().unwrap_or_default();
    let name = c.name.clone();
    for (field, short, probe) in [
        ("livenessProbe", "livez", &mut c.liveness_probe),
        ("readinessProbe", "readyz", &mut c.readiness_probe),
        ("startupProbe", "startupz", &mut c.startup_probe),
    ] {
        let Some(p) = probe.as_mut() else { continue };
        let timeout = p.timeout_seconds.unwrap_or(1);
        let Some(get) = p.http_get.as_mut() else {
            continue;
        };
        if get.host.as_deref().is_some_and(|h| !h.is_empty()) {
            continue;
        }
        let fail = |why: String| PatchError::BadProbe {
            container: name.clone(),
            probe: field,
            why,
        };
        let port = resolve_port(&get.port, &ports).map_err(fail)?;
        let scheme = match get.scheme.as_deref() {
            None | Some("HTTP") => Scheme::Http,
            Some("HTTPS") => Scheme::Https,
            Some(other) => {
                return Err(fail(format!(
                    "scheme `{}` is not HTTP or HTTPS",
                    echoed(other)
                )));
            }
        };
        let path = match get.path.as_deref() {
            None | Some("") => "/".to_string(),
            Some(p) if p.starts_with('/') => p.to_string(),
            Some(p) => format!("/{p}"),
        };
        let headers = get
            .http_headers
            .iter()
            .flatten()
            .map(|h| ProbeHeader {
                name: h.name.clone(),
                value: h.value.clone(),
            })
            .collect();
        let timeout_seconds = u32::try_from(timeout)
            .unwrap_or(1)
            .clamp(1, MAX_TIMEOUT_SECONDS);
        out.insert(
            format!("{name}/{short}"),
            AppProbe {
                port,
                path,
                scheme,
                headers,
                timeout_seconds,
            },
        );
        *get = HTTPGetAction {
            path: Some(app_health_path(&name, short)),
            port: IntOrString::Int(i32::from(admin_port)),
            scheme: Some("HTTP".into()),
            ..Default::default()
        };
    }
    Ok(())
}

fn resolve_port(port: &IntOrString, ports: &[ContainerPort]) -> Result<u16, String> {
    let number = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => match ports.iter().find(|p| p.name.as_deref() == Some(s)) {
            Some(p) => p.container_port,
            None => s.parse::<i32>().map_err(|_| {
                format!("port `{}` is not a named port of the container", echoed(s))
            })?,
        },
    };
    u16::try_from(number)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("port {number} is not within 1-65535"))
}

fn own_probe(path: &str, port: u16, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(i32::from(port)),
            scheme: Some("HTTP".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Default::default()
    }
}

fn sidecar(
    s: &InjectSettings,
    native: bool,
    upstream_port: Option<u16>,
    app_probes: &BTreeMap<String, AppProbe>,
) -> Result<Container, PatchError> {
    let mut args = vec![
        "run".to_string(),
        "-c".into(),
        CONFIG_FILE.into(),
        "--log-format".into(),
        s.log_format.clone(),
    ];
    if let Some(p) = upstream_port {
        args.push("--upstream".into());
        args.push(format!("http://127.0.0.1:{p}"));
    }
    let env = if app_probes.is_empty() {
        None
    } else {
        let json =
            serde_json::to_string(app_probes).map_err(|e| PatchError::Serialize(e.to_string()))?;
        Some(vec![EnvVar {
            name: APP_PROBES_ENV.into(),
            value: Some(json),
            ..Default::default()
        }])
    };
    let mount = |name: &str, path: &str| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..Default::default()
    };
    Ok(Container {
        name: CONTAINER_NAME.into(),
        image: Some(s.image.clone()),
        image_pull_policy: s.image_pull_policy.clone(),
        args: Some(args),
        env,
        ports: Some(vec![
            ContainerPort {
                name: Some(PORT_NAME.into()),
                container_port: i32::from(s.listen_port),
                protocol: Some("TCP".into()),
                ..Default::default()
            },
            ContainerPort {
                name: Some(ADMIN_PORT_NAME.into()),
                container_port: i32::from(s.admin_port),
                protocol: Some("TCP".into()),
                ..Default::default()
            },
        ]),
        volume_mounts: Some(vec![
            mount(VOLUME_CONFIG, CONFIG_DIR),
            mount(VOLUME_TLS, TLS_DIR),
            mount(VOLUME_KEYS, KEYS_DIR),
        ]),
        resources: Some(s.resources.clone()),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            run_as_user: Some(s.run_as_user),
            run_as_group: Some(s.run_as_user),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        startup_probe: Some(own_probe("/readyz", s.admin_port, 1, 60)),
        liveness_probe: Some(own_probe("/healthz", s.admin_port, 10, 3)),
        readiness_probe: Some(own_probe("/readyz", s.admin_port, 5, 2)),
        restart_policy: native.then(|| "Always".into()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inject::probes::AppProbes;
    use serde_json::{Value, json};

    fn settings() -> InjectSettings {
        InjectSettings {
            image: "ghcr.io/countersign/countersign:0.1.0".into(),
            image_pull_policy: Some("IfNotPresent".into()),
            native_sidecar: true,
            listen_port: 8443,
            admin_port: 9901,
            config_map: "countersign-config".into(),
            tls_secret: "countersign-tls".into(),
            keys_secret: "countersign-keys".into(),
            resources: ResourceRequirements::default(),
            run_as_user: 65532,
            log_format: "json".into(),
            rewrite_probes: true,
        }
    }

    /// A pod as the API server sends it, with a field newer than our k8s-openapi version.
    fn raw_pod(annotations: Value) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"generateName": "orders-7d9f-", "namespace": "shop",
                         "labels": {"app": "orders"}, "annotations": annotations},
            "spec": {
                "containers": [{
                    "name": "orders",
                    "image": "example/orders:1",
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "livenessProbe": {"httpGet": {"path": "/live", "port": "http",
                        "httpHeaders": [{"name": "X-Probe", "value": "1"}]}, "timeoutSeconds": 3},
                    "readinessProbe": {"httpGet": {"path": "ready?deep=1", "port": 8081, "scheme": "HTTPS"}},
                    "startupProbe": {"tcpSocket": {"port": 8080}},
                    "futureField": {"kept": true}
                }],
                "initContainers": [{"name": "migrate", "image": "example/migrate:1"}],
                "volumes": [{"name": "data", "emptyDir": {}}]
            }
        })
    }

    fn pod(v: &Value) -> Pod {
        serde_json::from_value(v.clone()).unwrap()
    }

    fn injected(annotations: Value) -> (Value, json_patch::Patch) {
        let raw = raw_pod(annotations);
        let Outcome::Inject(p) = build_patch(&pod(&raw), &settings()).unwrap() else {
            panic!("not injected")
        };
        let mut out = raw.clone();
        json_patch::patch(&mut out, &p).unwrap();
        (out, p)
    }

    fn refused(annotations: Value) -> String {
        build_patch(&pod(&raw_pod(annotations)), &settings())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_pod_without_containers_is_refused_not_given_a_broken_patch() {
        // Found by fuzz/fuzz_targets/admission.rs: `containers` absent deserializes as an
        // empty list, so the patch appended to /spec/containers, which the pod does not have.
        let annotations = json!({"countersign.dev/inject": "true",
                                 "countersign.dev/native-sidecar": "false"});
        let mut raw = raw_pod(annotations.clone());
        raw["spec"].as_object_mut().unwrap().remove("containers");
        let e = build_patch(&pod(&raw), &settings()).unwrap_err();
        assert_eq!(e, PatchError::NoContainers);
        raw.as_object_mut().unwrap().remove("spec");
        let e = build_patch(&pod(&raw), &settings()).unwrap_err();
        assert_eq!(e, PatchError::NoContainers);
        // The same pod with its container is injected, and the patch applies.
        let (out, _) = injected(annotations);
        assert_eq!(out["spec"]["containers"][1]["name"], "countersign");
    }

    #[test]
    fn pods_without_the_annotation_are_left_alone() {
        let raw = raw_pod(json!({"team": "a"}));
        assert_eq!(
            build_patch(&pod(&raw), &settings()).unwrap(),
            Outcome::Skip(Skip::NotOptedIn)
        );
        let raw = raw_pod(json!({ANNOTATION_INJECT: "false"}));
        assert_eq!(
            build_patch(&pod(&raw), &settings()).unwrap(),
            Outcome::Skip(Skip::OptedOut)
        );
    }

    #[test]
    fn the_inject_label_opts_in_too() {
        let mut raw = raw_pod(json!({}));
        raw["metadata"]["labels"][ANNOTATION_INJECT] = json!("true");
        assert!(matches!(
            build_patch(&pod(&raw), &settings()).unwrap(),
            Outcome::Inject(_)
        ));
    }

    #[test]
    fn native_sidecar_is_appended_to_init_containers() {
        let (out, _) = injected(json!({ANNOTATION_INJECT: "true"}));
        let inits = out["spec"]["initContainers"].as_array().unwrap();
        assert_eq!(inits.len(), 2);
        assert_eq!(inits[0]["name"], "migrate");
        let sc = &inits[1];
        assert_eq!(sc["name"], CONTAINER_NAME);
        assert_eq!(sc["restartPolicy"], "Always");
        assert_eq!(sc["image"], "ghcr.io/countersign/countersign:0.1.0");
        assert_eq!(
            sc["args"],
            json!(["run", "-c", CONFIG_FILE, "--log-format", "json"])
        );
        assert_eq!(sc["ports"][0]["containerPort"], 8443);
        assert_eq!(sc["ports"][1]["containerPort"], 9901);
        let sec = &sc["securityContext"];
        assert_eq!(sec["runAsNonRoot"], true);
        assert_eq!(sec["runAsUser"], 65532);
        assert_eq!(sec["readOnlyRootFilesystem"], true);
        assert_eq!(sec["allowPrivilegeEscalation"], false);
        assert_eq!(sec["capabilities"]["drop"], json!(["ALL"]));
        assert_eq!(sc["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(sc["readinessProbe"]["httpGet"]["port"], 9901);
        let mounts: Vec<&str> = sc["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["mountPath"].as_str().unwrap())
            .collect();
        assert_eq!(mounts, [CONFIG_DIR, TLS_DIR, KEYS_DIR]);
        assert!(sc["volumeMounts"][0].get("subPath").is_none());
        assert_eq!(out["spec"]["containers"].as_array().unwrap().len(), 1);
        assert_eq!(out["metadata"]["labels"][LABEL_INJECTED], "true");
        assert_eq!(out["metadata"]["labels"]["app"], "orders");
        let vols = out["spec"]["volumes"].as_array().unwrap();
        assert_eq!(vols[0]["name"], "data");
        assert_eq!(vols[1]["configMap"]["name"], "countersign-config");
        assert_eq!(vols[2]["secret"]["secretName"], "countersign-tls");
        assert_eq!(vols[3]["secret"]["secretName"], "countersign-keys");
    }

    #[test]
    fn fields_unknown_to_us_survive_the_patch() {
        let (out, _) = injected(json!({ANNOTATION_INJECT: "true"}));
        assert_eq!(
            out["spec"]["containers"][0]["futureField"],
            json!({"kept": true})
        );
    }

    #[test]
    fn annotations_choose_objects_port_and_plain_container() {
        let (out, _) = injected(json!({
            ANNOTATION_INJECT: "true",
            ANNOTATION_NATIVE_SIDECAR: "false",
            ANNOTATION_CONFIG: "orders-cs",
            ANNOTATION_TLS_SECRET: "orders-tls",
            ANNOTATION_KEYS_SECRET: "orders.keys",
            ANNOTATION_UPSTREAM_PORT: "8080",
        }));
        let cs = out["spec"]["containers"].as_array().unwrap();
        assert_eq!(cs.len(), 2);
        assert_eq!(
            cs[0]["name"], "orders",
            "the app stays the default container"
        );
        assert_eq!(cs[1]["name"], CONTAINER_NAME);
        assert!(cs[1].get("restartPolicy").is_none());
        let args = cs[1]["args"].as_array().unwrap();
        assert_eq!(
            args[5..],
            [json!("--upstream"), json!("http://127.0.0.1:8080")]
        );
        assert_eq!(out["spec"]["initContainers"].as_array().unwrap().len(), 1);
        let vols = out["spec"]["volumes"].as_array().unwrap();
        assert_eq!(vols[1]["configMap"]["name"], "orders-cs");
        assert_eq!(vols[2]["secret"]["secretName"], "orders-tls");
        assert_eq!(vols[3]["secret"]["secretName"], "orders.keys");
    }

    #[test]
    fn http_probes_go_through_the_admin_port_and_the_env_carries_them() {
        let (out, _) = injected(json!({ANNOTATION_INJECT: "true"}));
        let app = &out["spec"]["containers"][0];
        assert_eq!(
            app["livenessProbe"]["httpGet"],
            json!({"path": "/app-health/orders/livez", "port": 9901, "scheme": "HTTP"})
        );
        assert_eq!(app["livenessProbe"]["timeoutSeconds"], 3);
        assert_eq!(
            app["readinessProbe"]["httpGet"]["path"],
            "/app-health/orders/readyz"
        );
        assert_eq!(app["startupProbe"], json!({"tcpSocket": {"port": 8080}}));
        let env = &out["spec"]["initContainers"][1]["env"][0];
        assert_eq!(env["name"], APP_PROBES_ENV);
        let probes: Value = serde_json::from_str(env["value"].as_str().unwrap()).unwrap();
        assert_eq!(
            probes,
            json!({
                "orders/livez": {"port": 8080, "path": "/live", "scheme": "HTTP",
                    "headers": [{"name": "X-Probe", "value": "1"}], "timeout_seconds": 3},
                "orders/readyz": {"port": 8081, "path": "/ready?deep=1", "scheme": "HTTPS",
                    "timeout_seconds": 1}
            })
        );
        let parsed = AppProbes::from_json(env["value"].as_str().unwrap()).unwrap();
        assert_eq!(parsed.len(), 2);
    }

    #[test]
    fn probes_stay_when_rewriting_is_off_or_they_target_another_host() {
        let (out, _) =
            injected(json!({ANNOTATION_INJECT: "true", ANNOTATION_REWRITE_PROBES: "false"}));
        assert_eq!(
            out["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"],
            "http"
        );
        assert!(out["spec"]["initContainers"][1].get("env").is_none());

        let mut raw = raw_pod(json!({ANNOTATION_INJECT: "true"}));
        raw["spec"]["containers"][0]["livenessProbe"]["httpGet"]["host"] = json!("10.1.2.3");
        let Outcome::Inject(p) = build_patch(&pod(&raw), &settings()).unwrap() else {
            panic!()
        };
        let mut out = raw.clone();
        json_patch::patch(&mut out, &p).unwrap();
        assert_eq!(
            out["spec"]["containers"][0]["livenessProbe"]["httpGet"]["host"],
            "10.1.2.3"
        );
    }

    #[test]
    fn an_injected_pod_is_not_injected_again() {
        let (out, _) = injected(json!({ANNOTATION_INJECT: "true"}));
        assert_eq!(
            build_patch(&pod(&out), &settings()).unwrap(),
            Outcome::Skip(Skip::AlreadyInjected)
        );
        let mut raw = raw_pod(json!({ANNOTATION_INJECT: "true"}));
        raw["spec"]["containers"][0]["name"] = json!(CONTAINER_NAME);
        assert_eq!(
            build_patch(&pod(&raw), &settings()).unwrap(),
            Outcome::Skip(Skip::AlreadyInjected)
        );
    }

    #[test]
    fn bad_annotation_values_are_refused_by_name() {
        let cases = [
            (json!({ANNOTATION_INJECT: "yes"}), ANNOTATION_INJECT),
            (
                json!({ANNOTATION_INJECT: "true", ANNOTATION_NATIVE_SIDECAR: "maybe"}),
                ANNOTATION_NATIVE_SIDECAR,
            ),
            (
                json!({ANNOTATION_INJECT: "true", ANNOTATION_REWRITE_PROBES: "no"}),
                ANNOTATION_REWRITE_PROBES,
            ),
            (
                json!({ANNOTATION_INJECT: "true", ANNOTATION_CONFIG: "Orders_CS"}),
                ANNOTATION_CONFIG,
            ),
            (
                json!({ANNOTATION_INJECT: "true", ANNOTATION_TLS_SECRET: ""}),
                ANNOTATION_TLS_SECRET,
            ),
            (
                json!({ANNOTATION_INJECT: "true", ANNOTATION_KEYS_SECRET: "-x"}),
                ANNOTATION_KEYS_SECRET,
            ),
            (
                json!({ANNOTATION_INJECT: "true", ANNOTATION_UPSTREAM_PORT: "0"}),
                ANNOTATION_UPSTREAM_PORT,
            ),
            (
                json!({ANNOTATION_INJECT: "true", ANNOTATION_UPSTREAM_PORT: "70000"}),
                ANNOTATION_UPSTREAM_PORT,
            ),
            (
                json!({ANNOTATION_INJECT: "true", ANNOTATION_UPSTREAM_PORT: "9901"}),
                ANNOTATION_UPSTREAM_PORT,
            ),
        ];
        for (ann, name) in cases {
            let m = refused(ann.clone());
            assert!(m.starts_with(&format!("annotation {name}: ")), "{ann}: {m}");
        }
        let long = "x".repeat(5000);
        let m = refused(json!({ANNOTATION_INJECT: long}));
        assert!(m.len() < 200, "the value is cut short: {m}");
    }

    #[test]
    fn conflicts_and_unresolvable_probes_are_refused() {
        let mut raw = raw_pod(json!({ANNOTATION_INJECT: "true"}));
        raw["spec"]["volumes"][0]["name"] = json!("countersign-tls");
        let m = build_patch(&pod(&raw), &settings())
            .unwrap_err()
            .to_string();
        assert!(m.contains("volume name countersign-tls is reserved"), "{m}");

        let mut raw = raw_pod(json!({ANNOTATION_INJECT: "true"}));
        raw["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(8443);
        let m = build_patch(&pod(&raw), &settings())
            .unwrap_err()
            .to_string();
        assert!(m.contains("container orders declares port 8443"), "{m}");

        let mut raw = raw_pod(json!({ANNOTATION_INJECT: "true"}));
        raw["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"] = json!("metrics");
        let m = build_patch(&pod(&raw), &settings())
            .unwrap_err()
            .to_string();
        assert_eq!(
            m,
            "container orders: livenessProbe: port `metrics` is not a named port of the container"
        );
    }
}
