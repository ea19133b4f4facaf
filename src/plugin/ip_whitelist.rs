//! `ip_whitelist`: only clients whose address is in `ips` (CIDRs or single
//! addresses, IPv4 and IPv6) pass; others get 403. The client address is
//! the socket's peer, or — only when that peer is in `trusted_proxies` — the
//! rightmost `X-Forwarded-For` entry that is not itself a trusted proxy.
//!
//! ```json
//! {"ips": ["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"], "trusted_proxies": ["127.0.0.1"]}
//! ```
//! TrustGate's spelling compiles to the same plugin: `{"enabled": true,
//! "ips": ["192.168.1.7"], "cidrs": ["10.0.0.0/8"]}`; `enabled: false` lets
//! every client through.

use std::net::IpAddr;

use serde::Deserialize;

use super::{bad, RequestView, Stop};
use crate::config::ConfigError;
use crate::http::headers::trim;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default, alias = "allowed_ips")]
    pub ips: Vec<String>,
    /// TrustGate's CIDR list (ringgate's `ips` takes both forms).
    #[serde(default)]
    pub cidrs: Vec<String>,
    /// TrustGate's switch: `false` lets every client through.
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

/// An address block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: u128,
    prefix: u8,
    v4: bool,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (a, p) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().ok()?)),
            None => (s.trim(), None),
        };
        let ip: IpAddr = a.parse().ok()?;
        let (addr, max, v4) = match ip {
            IpAddr::V4(v) => (u128::from(u32::from(v)), 32, true),
            IpAddr::V6(v) => (u128::from(v), 128, false),
        };
        let prefix = p.unwrap_or(max);
        if prefix > max {
            return None;
        }
        let c = Cidr { addr, prefix, v4 };
        Some(Cidr {
            addr: addr & c.mask(),
            ..c
        })
    }

    fn mask(&self) -> u128 {
        let bits = if self.v4 { 32 } else { 128 };
        if self.prefix == 0 {
            0
        } else {
            (u128::MAX << (bits - self.prefix as u32)) & (u128::MAX >> (128 - bits))
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let (addr, v4) = match ip {
            IpAddr::V4(v) => (u128::from(u32::from(v)), true),
            IpAddr::V6(v) => match v.to_ipv4_mapped() {
                Some(v4) if self.v4 => (u128::from(u32::from(v4)), true),
                _ => (u128::from(v), false),
            },
        };
        v4 == self.v4 && addr & self.mask() == self.addr
    }
}

#[derive(Debug)]
pub struct IpWhitelist {
    /// `enabled: false`: every client passes.
    enabled: bool,
    allowed: Vec<Cidr>,
    trusted: Vec<Cidr>,
}

fn parse_list(list: &[String], field: &str, name: &str) -> Result<Vec<Cidr>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            Cidr::parse(s).ok_or_else(|| {
                bad(
                    field,
                    &format!("{name}[{i}]"),
                    format!("{s:?} is not an IP address or CIDR"),
                )
            })
        })
        .collect()
}

impl IpWhitelist {
    pub fn new(s: Settings, field: &str) -> Result<IpWhitelist, ConfigError> {
        let enabled = s.enabled != Some(false);
        if enabled && s.ips.is_empty() && s.cidrs.is_empty() {
            return Err(bad(
                field,
                "ips",
                "needs at least one address or CIDR (ips or cidrs)",
            ));
        }
        let mut allowed = parse_list(&s.ips, field, "ips")?;
        allowed.extend(parse_list(&s.cidrs, field, "cidrs")?);
        Ok(IpWhitelist {
            enabled,
            allowed,
            trusted: parse_list(&s.trusted_proxies, field, "trusted_proxies")?,
        })
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|c| c.contains(ip))
    }

    /// The client's address as this plugin sees it.
    pub fn client_ip(&self, req: &RequestView<'_>) -> Option<IpAddr> {
        let peer = req.peer?;
        if !self.trusted(peer) {
            return Some(peer);
        }
        let Some(xff) = req.header("x-forwarded-for") else {
            return Some(peer);
        };
        let mut last = None;
        for part in xff.rsplit(|&b| b == b',') {
            let ip: IpAddr = std::str::from_utf8(trim(part)).ok()?.parse().ok()?;
            last = Some(ip);
            if !self.trusted(ip) {
                return Some(ip);
            }
        }
        last.or(Some(peer))
    }

    pub fn check(&self, req: &RequestView<'_>) -> Option<Stop> {
        if !self.enabled {
            return None;
        }
        match self.client_ip(req) {
            Some(ip) if self.allowed.iter().any(|c| c.contains(ip)) => None,
            _ => Some(Stop::Reject(403, "client IP address not allowed".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.200.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.0.9".parse().unwrap()));
        let c6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(c6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!c6.contains("2001:db9::5".parse().unwrap()));
        assert!(!c6.contains("10.1.0.1".parse().unwrap()));
        let one = Cidr::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("nope").is_none());
    }
}
