//! The per-request work outside signature verification: client-IP lookup in a large allow-list,
//! route matching, path normalization and the identity-header rewrite.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use countersign::config::{Mode, RouteSettings};
use countersign::policy::ipset::IpSet;
use countersign::policy::path;
use countersign::policy::routes::Routes;
use countersign::proxy;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use ipnet::IpNet;

fn ip_lookup(c: &mut Criterion) {
    // 10,000 disjoint /24s spread over the IPv4 space, plus some IPv6.
    let mut nets: Vec<IpNet> = (0..10_000u32)
        .map(|i| {
            IpNet::V4(
                ipnet::Ipv4Net::new(Ipv4Addr::from(0x0a00_0000u32 + (i * 997) * 256), 24)
                    .unwrap()
                    .trunc(),
            )
        })
        .collect();
    nets.push("2001:db8::/32".parse().unwrap());
    let set = IpSet::new(&nets);
    let hit = IpAddr::V4(Ipv4Addr::from(0x0a00_0000u32 + (5_000 * 997) * 256 + 7));
    let miss = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    c.bench_function("ip_allow lookup, 10k CIDRs (hit)", |b| {
        b.iter(|| black_box(set.contains(black_box(hit))))
    });
    c.bench_function("ip_allow lookup, 10k CIDRs (miss)", |b| {
        b.iter(|| black_box(set.contains(black_box(miss))))
    });
}

fn route_match(c: &mut Criterion) {
    let settings: Vec<RouteSettings> = (0..200)
        .map(|i| RouteSettings {
            name: format!("r{i}"),
            path: format!("/service-{i}/v1"),
            methods: if i % 3 == 0 {
                vec![Method::POST]
            } else {
                vec![]
            },
            require: vec![],
            scopes: vec![],
            mode: Mode::Enforce,
        })
        .chain(std::iter::once(RouteSettings {
            name: "default".into(),
            path: "/".into(),
            methods: vec![],
            require: vec![],
            scopes: vec![],
            mode: Mode::Enforce,
        }))
        .collect();
    let routes = Routes::new(&settings);
    c.bench_function("route match among 200 routes (last one)", |b| {
        b.iter(|| {
            black_box(
                routes
                    .find(&Method::GET, black_box("/service-199/v1/orders/42"))
                    .is_some(),
            )
        })
    });
    c.bench_function("path for matching (plain path)", |b| {
        b.iter(|| black_box(path::for_matching(black_box("/service-7/v1/orders/42"))))
    });
    c.bench_function("path for matching (dot segments)", |b| {
        b.iter(|| black_box(path::for_matching(black_box("/public/..%2Fservice-7/v1"))))
    });
}

fn header_rewrite(c: &mut Criterion) {
    let mut base = HeaderMap::new();
    for (k, v) in [
        ("host", "orders.internal:8443"),
        ("user-agent", "Tyk/5.3"),
        ("accept", "application/json"),
        ("date", "Thu, 04 Dec 2025 10:00:00 UTC"),
        (
            "authorization",
            "Signature keyId=\"tyk\",algorithm=\"hmac-sha256\",headers=\"(request-target) date\",signature=\"abc\"",
        ),
        ("x-request-id", "r-1"),
        ("connection", "keep-alive"),
    ] {
        base.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    let subject = HeaderValue::from_static("CN=tyk-edge");
    let sha = HeaderValue::from_static(
        "5f2b0e6c7d8a9b0c1d2e3f405162738495a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0",
    );
    let ip = HeaderValue::from_static("203.0.113.7");
    c.bench_function("identity-header rewrite", |b| {
        b.iter_batched(
            || base.clone(),
            |mut h| {
                proxy::strip_hop_by_hop(&mut h, false);
                proxy::strip_spoofable(&mut h);
                h.insert(countersign::headers::CLIENT_IP, ip.clone());
                h.insert(countersign::headers::CERT_SUBJECT, subject.clone());
                h.insert(countersign::headers::CERT_SHA256, sha.clone());
                black_box(h)
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, ip_lookup, route_match, header_rewrite);
criterion_main!(benches);
