//! Where outbound requests may land: IP address classes and the DNS resolver that refuses names
//! resolving to loopback, private, link-local or otherwise non-public addresses.
//!
//! The host resolves names itself (this resolver is the HTTP client's only one), so the address
//! checked is the address connected to: a public name that points at 127.0.0.1 or at the cloud
//! metadata service (169.254.169.254) is refused at connect time, whatever it resolved to before.
//! Names the operator set explicitly (mock mode, a `*_API_BASE` variable, a deployment's `allow`)
//! may resolve anywhere.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, RwLock};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why an address is not a public internet address, or `None` when it is.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => "unspecified",
        (127, _, _) => "loopback",
        (10, _, _) | (192, 168, _) => "private",
        (172, b, _) if (16..32).contains(&b) => "private",
        (169, 254, _) => "link-local",
        (100, b, _) if (64..128).contains(&b) => "shared (carrier-grade NAT)",
        (192, 0, 0) | (198, 18..=19, _) => "reserved",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved",
        _ => return None,
    })
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return non_public_v4(v4);
    }
    let s = ip.segments();
    // NAT64 (64:ff9b::/96) embeds an IPv4 address: judge that one.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        return non_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    Some(if ip.is_unspecified() {
        "unspecified"
    } else if ip.is_loopback() {
        "loopback"
    } else if s[0] & 0xfe00 == 0xfc00 {
        "unique-local (private)"
    } else if s[0] & 0xffc0 == 0xfe80 {
        "link-local"
    } else if s[0] & 0xff00 == 0xff00 {
        "multicast"
    } else if s[0] == 0x2001 && s[1] == 0x0db8 {
        "documentation"
    } else if s[..6] == [0; 6] {
        "reserved (IPv4-compatible)"
    } else {
        return None;
    })
}

/// A name that resolved to an address it may not reach.
#[derive(Debug, Clone)]
pub struct Refused {
    pub host: String,
    pub addr: IpAddr,
    pub class: &'static str,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} resolves to {}, a {} address: refused (only origins the operator sets explicitly \
             may reach non-public addresses)",
            self.host, self.addr, self.class
        )
    }
}

impl std::error::Error for Refused {}

/// The HTTP client's resolver: system DNS, then every address checked.
pub struct GuardedResolver {
    /// Lower-case host names that may resolve to non-public addresses.
    /// Host names an operator listed explicitly (grows as deployments list their own).
    pub private_ok: Arc<RwLock<HashSet<String>>>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_ascii_lowercase();
        let private_ok = self
            .private_ok
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&host);
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !private_ok
                && let Some((addr, class)) = addrs
                    .iter()
                    .find_map(|a| non_public(a.ip()).map(|class| (a.ip(), class)))
            {
                return Err(Box::new(Refused { host, addr, class }) as _);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The [`Refused`] somewhere in an error's causes.
pub fn refused_in<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cause {
        if let Some(refused) = err.downcast_ref::<Refused>() {
            return Some(refused);
        }
        cause = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_classified() {
        let class = |s: &str| non_public(s.parse().unwrap());
        assert_eq!(class("127.0.0.1"), Some("loopback"));
        assert_eq!(class("10.1.2.3"), Some("private"));
        assert_eq!(class("172.16.0.1"), Some("private"));
        assert_eq!(class("172.32.0.1"), None);
        assert_eq!(class("192.168.1.1"), Some("private"));
        assert_eq!(class("169.254.169.254"), Some("link-local"));
        assert_eq!(class("0.0.0.0"), Some("unspecified"));
        assert_eq!(class("100.64.0.1"), Some("shared (carrier-grade NAT)"));
        assert_eq!(class("8.8.8.8"), None);
        assert_eq!(class("::1"), Some("loopback"));
        assert_eq!(class("::ffff:127.0.0.1"), Some("loopback"));
        assert_eq!(class("::ffff:169.254.169.254"), Some("link-local"));
        assert_eq!(class("64:ff9b::a9fe:a9fe"), Some("link-local"));
        assert_eq!(class("fe80::1"), Some("link-local"));
        assert_eq!(class("fd00::1"), Some("unique-local (private)"));
        assert_eq!(class("2606:4700::1111"), None);
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused_unless_allowed() {
        let strict = GuardedResolver {
            private_ok: Arc::default(),
        };
        let name = || "localhost".parse::<Name>().unwrap();
        let err = match strict.resolve(name()).await {
            Ok(_) => panic!("localhost resolved"),
            Err(e) => e,
        };
        let refused = refused_in(&*err).expect("a Refused error");
        assert_eq!(refused.class, "loopback");
        assert!(err.to_string().contains("localhost resolves to"), "{err}");

        let lenient = GuardedResolver {
            private_ok: Arc::new(RwLock::new(HashSet::from(["localhost".to_string()]))),
        };
        let addrs: Vec<SocketAddr> = match lenient.resolve(name()).await {
            Ok(addrs) => addrs.collect(),
            Err(e) => panic!("{e}"),
        };
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }
}
