//! The SSRF guard: a prober reachable by any user must not become a way into
//! the network it runs in.
//!
//! Addresses are checked where the connection is made: the DNS resolver
//! handed to reqwest drops every refused address from what it returns, so
//! the socket can only go to an address that passed (DNS rebinding cannot
//! swap one in between check and use). URLs whose host is a literal IP skip
//! DNS, so they are checked before the request and at every redirect.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether the prober refuses to connect to `ip`.
pub fn is_blocked(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_blocked_v4(v4),
        IpAddr::V6(v6) => is_blocked_v6(v6),
    }
}

fn is_blocked_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()          // 127/8
        || ip.is_private()           // 10/8, 172.16/12, 192.168/16
        || ip.is_link_local()        // 169.254/16, cloud metadata included
        || ip.is_multicast()         // 224/4
        || ip.is_broadcast()
        || ip.is_documentation()     // 192.0.2/24, 198.51.100/24, 203.0.113/24
        || a == 0                    // "this network"
        || (a == 100 && (b & 0xc0) == 64) // 100.64/10 CGNAT
        || (a == 192 && b == 0 && c == 0) // 192.0.0/24 IETF protocol assignments
        || (a == 198 && (b & 0xfe) == 18) // 198.18/15 benchmarking
        || a >= 240 // 240/4 reserved
}

/// The IPv4 addresses an IPv6 address carries, in every form that routes
/// to one: IPv4-mapped (`::ffff:0:0/96`), SIIT (`::ffff:0:0:0/96`), NAT64
/// (`64:ff9b::/96`), 6to4 (`2002::/16`), Teredo (`2001::/32`: the server,
/// and the client obfuscated), ISATAP (`…:0:5efe:a.b.c.d`, `…:200:5efe:…`).
fn embedded_v4(ip: Ipv6Addr) -> Vec<Ipv4Addr> {
    let seg = ip.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    let mut found = Vec::new();
    if seg[0..5] == [0, 0, 0, 0, 0] && seg[5] == 0xffff {
        found.push(v4(seg[6], seg[7])); // IPv4-mapped
    }
    if seg[0..4] == [0, 0, 0, 0] && seg[4] == 0xffff && seg[5] == 0 {
        found.push(v4(seg[6], seg[7])); // SIIT, IPv4-translated
    }
    if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6] == [0, 0, 0, 0] {
        found.push(v4(seg[6], seg[7])); // NAT64, well-known prefix
    }
    if seg[0] == 0x2002 {
        found.push(v4(seg[1], seg[2])); // 6to4
    }
    if seg[0] == 0x2001 && seg[1] == 0 {
        found.push(v4(seg[2], seg[3])); // Teredo server
        found.push(v4(!seg[6], !seg[7])); // Teredo client, obfuscated
    }
    if (seg[4] == 0 || seg[4] == 0x0200) && seg[5] == 0x5efe {
        found.push(v4(seg[6], seg[7])); // ISATAP interface identifier
    }
    found
}

fn is_blocked_v6(ip: Ipv6Addr) -> bool {
    if embedded_v4(ip).into_iter().any(is_blocked_v4) {
        return true;
    }
    let seg = ip.segments();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (seg[0] & 0xfe00) == 0xfc00 // fc00::/7 unique local
        || (seg[0] & 0xffc0) == 0xfe80 // fe80::/10 link-local
        || (seg[0] & 0xffc0) == 0xfec0 // fec0::/10 site-local (deprecated)
        || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
        || (seg[0..6] == [0, 0, 0, 0, 0, 0]) // ::/96 IPv4-compatible
        || (seg[0] == 0x64 && seg[1] == 0xff9b && seg[2] == 1) // 64:ff9b:1::/48 local-use NAT64
}

/// A refused address, surfaced as error kind `blocked`.
#[derive(Debug)]
pub struct Blocked(pub String);

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is a private or reserved address; to probe it, start the server with MONITOR_ALLOW_PRIVATE_TARGETS=true",
            self.0
        )
    }
}

impl std::error::Error for Blocked {}

/// A name that did not resolve, surfaced as error kind `dns`.
#[derive(Debug)]
pub struct DnsFailure(pub String);

impl fmt::Display for DnsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DnsFailure {}

/// The resolver reqwest connects through.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let allowed = resolve(name.as_str(), allow_private).await?;
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Resolves `host` (port 0) and keeps the addresses the guard allows: a
/// [`DnsFailure`] if it does not resolve, [`Blocked`] if every address is
/// refused. What reqwest's connections and the plain HTTP probe connect to.
pub async fn resolve(
    host: &str,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|e| Box::new(DnsFailure(format!("{host}: {e}"))))?
        .collect();
    if addrs.is_empty() {
        return Err(Box::new(DnsFailure(format!("{host}: no addresses"))));
    }
    let allowed: Vec<SocketAddr> = addrs
        .iter()
        .copied()
        .filter(|a| allow_private || !is_blocked(a.ip()))
        .collect();
    if allowed.is_empty() {
        return Err(Box::new(Blocked(format!("{host} ({})", addrs[0].ip()))));
    }
    Ok(allowed)
}

/// Checks a URL whose host is a literal IP address (DNS is not consulted for those).
pub fn check_literal(url: &url::Url, allow_private: bool) -> Result<(), Blocked> {
    if allow_private {
        return Ok(());
    }
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        _ => return Ok(()),
    };
    if is_blocked(ip) {
        return Err(Blocked(ip.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_internal_and_reserved_addresses() {
        for ip in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "::127.0.0.1",
            // Every IPv6 form that embeds a blocked IPv4 address.
            "2002:7f00:1::",                // 6to4 of 127.0.0.1
            "2002:a9fe:a9fe::1",            // 6to4 of 169.254.169.254
            "::ffff:0:7f00:1",              // SIIT of 127.0.0.1
            "::ffff:0:a00:1",               // SIIT of 10.0.0.1
            "64:ff9b:1::a9fe:a9fe",         // local-use NAT64
            "64:ff9b:1::808:808",           // local-use NAT64, whatever it embeds
            "2001:0:a00:1::",               // Teredo, server 10.0.0.1
            "2001:0:808:808:0:0:80ff:fffe", // Teredo, client 127.0.0.1 (obfuscated)
            "2606:4700::5efe:7f00:1",       // ISATAP of 127.0.0.1
            "fe80::200:5efe:a9fe:a9fe",     // ISATAP of 169.254.169.254
        ] {
            assert!(is_blocked(ip.parse().unwrap()), "{ip} should be blocked");
        }
    }

    #[test]
    fn allows_public_addresses() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700::1111",
            "64:ff9b::808:808",
            "2002:808:808::1",         // 6to4 of 8.8.8.8
            "::ffff:0:808:808",        // SIIT of 8.8.8.8
            "2606:4700::5efe:808:808", // ISATAP of 8.8.8.8
        ] {
            assert!(!is_blocked(ip.parse().unwrap()), "{ip} should be allowed");
        }
    }

    #[test]
    fn literal_hosts_are_checked() {
        let url = |s: &str| url::Url::parse(s).unwrap();
        assert!(check_literal(&url("http://127.0.0.1:8080/"), false).is_err());
        assert!(check_literal(&url("http://[::1]/"), false).is_err());
        assert!(check_literal(&url("http://169.254.169.254/latest/meta-data"), false).is_err());
        assert!(check_literal(&url("http://127.0.0.1/"), true).is_ok());
        assert!(check_literal(&url("http://example.com/"), false).is_ok());
        assert!(check_literal(&url("http://8.8.8.8/"), false).is_ok());
    }
}
