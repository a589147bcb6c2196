//! A set of IP networks, looked up by binary search over merged ranges.
//!
//! IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) and networks compare as IPv4, so a dual-stack
//! listener's peers match IPv4 entries.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Sorted, non-overlapping inclusive ranges for each family.
#[derive(Debug, Clone, Default)]
pub struct IpSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

/// `a` with an IPv4-mapped IPv6 address turned into IPv4.
pub fn canonical(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

fn merge<T: Copy + Ord + num_step::Step>(mut v: Vec<(T, T)>) -> Vec<(T, T)> {
    v.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(v.len());
    for (s, e) in v {
        if let Some(last) = out.last_mut()
            && (s <= last.1 || T::next(last.1) == Some(s))
        {
            if e > last.1 {
                last.1 = e;
            }
            continue;
        }
        out.push((s, e));
    }
    out
}

mod num_step {
    /// The successor of an integer, `None` at the maximum.
    pub trait Step: Sized {
        fn next(self) -> Option<Self>;
    }
    impl Step for u32 {
        fn next(self) -> Option<Self> {
            self.checked_add(1)
        }
    }
    impl Step for u128 {
        fn next(self) -> Option<Self> {
            self.checked_add(1)
        }
    }
}

fn find<T: Copy + Ord>(ranges: &[(T, T)], x: T) -> bool {
    // The last range starting at or before x.
    let i = ranges.partition_point(|r| r.0 <= x);
    i > 0 && x <= ranges[i - 1].1
}

impl IpSet {
    /// Builds the set from networks.
    pub fn new(nets: &[IpNet]) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for n in nets {
            match n {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
                IpNet::V6(n) => {
                    let (s, e) = (n.network(), n.broadcast());
                    // A network inside ::ffff:0:0/96 is an IPv4 network.
                    if let (Some(s4), Some(e4)) = (s.to_ipv4_mapped(), e.to_ipv4_mapped()) {
                        v4.push((u32::from(s4), u32::from(e4)));
                    } else {
                        v6.push((u128::from(s), u128::from(e)));
                    }
                }
            }
        }
        IpSet {
            v4: merge(v4),
            v6: merge(v6),
        }
    }

    /// True when the set has no networks.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// True when `a` is inside one of the networks.
    pub fn contains(&self, a: IpAddr) -> bool {
        match canonical(a) {
            IpAddr::V4(v4) => find(&self.v4, u32::from(v4)),
            IpAddr::V6(v6) => find(&self.v6, u128::from(v6)),
        }
    }

    /// True for an IPv4 address inside the set.
    pub fn contains_v4(&self, a: Ipv4Addr) -> bool {
        find(&self.v4, u32::from(a))
    }

    /// True for an IPv6 address inside the set (mapped addresses are not converted).
    pub fn contains_v6(&self, a: Ipv6Addr) -> bool {
        find(&self.v6, u128::from(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(list: &[&str]) -> IpSet {
        IpSet::new(
            &list
                .iter()
                .map(|s| s.parse().unwrap())
                .collect::<Vec<IpNet>>(),
        )
    }

    #[test]
    fn v4_and_v6() {
        let s = set(&["203.0.113.0/24", "2001:db8::/32", "10.0.0.1/32"]);
        assert!(s.contains("203.0.113.7".parse().unwrap()));
        assert!(!s.contains("203.0.114.7".parse().unwrap()));
        assert!(s.contains("2001:db8:1::9".parse().unwrap()));
        assert!(!s.contains("2001:db9::1".parse().unwrap()));
        assert!(s.contains("10.0.0.1".parse().unwrap()));
        assert!(!s.contains("10.0.0.2".parse().unwrap()));
    }

    #[test]
    fn mapped_addresses_compare_as_v4() {
        let s = set(&["203.0.113.0/24"]);
        assert!(s.contains("::ffff:203.0.113.9".parse().unwrap()));
        assert!(!s.contains("::ffff:203.0.112.9".parse().unwrap()));
        let m = set(&["::ffff:192.0.2.0/120"]);
        assert!(m.contains("192.0.2.77".parse().unwrap()));
        assert!(!m.contains("192.0.3.77".parse().unwrap()));
    }

    #[test]
    fn edges_and_everything() {
        let s = set(&["0.0.0.0/0", "::/0"]);
        assert!(s.contains("255.255.255.255".parse().unwrap()));
        assert!(s.contains("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap()));
        assert!(!IpSet::new(&[]).contains("1.2.3.4".parse().unwrap()));
    }

    proptest! {
        #[test]
        fn matches_naive_lookup(nets in proptest::collection::vec((any::<u32>(), 0u8..=32), 0..40), probes in proptest::collection::vec(any::<u32>(), 1..40)) {
            let nets: Vec<IpNet> = nets.into_iter().map(|(a, l)| IpNet::V4(ipnet::Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc())).collect();
            let s = IpSet::new(&nets);
            for p in probes {
                let ip = IpAddr::V4(Ipv4Addr::from(p));
                prop_assert_eq!(s.contains(ip), nets.iter().any(|n| n.contains(&ip)));
                // the same address, IPv4-mapped
                let mapped = IpAddr::V6(Ipv4Addr::from(p).to_ipv6_mapped());
                prop_assert_eq!(s.contains(mapped), nets.iter().any(|n| n.contains(&ip)));
            }
        }

        #[test]
        fn matches_naive_lookup_v6(nets in proptest::collection::vec((any::<u128>(), 0u8..=128), 0..30), probes in proptest::collection::vec(any::<u128>(), 1..30)) {
            let nets: Vec<IpNet> = nets.into_iter().map(|(a, l)| IpNet::V6(ipnet::Ipv6Net::new(Ipv6Addr::from(a), l).unwrap().trunc())).collect();
            let s = IpSet::new(&nets);
            for p in probes {
                let ip = Ipv6Addr::from(p);
                if ip.to_ipv4_mapped().is_some() { continue; }
                let ip = IpAddr::V6(ip);
                prop_assert_eq!(s.contains(ip), nets.iter().any(|n| n.contains(&ip)));
            }
        }
    }
}
