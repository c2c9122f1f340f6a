//! The DHCP hook's side of discovery: a lease event as the hook hands it over, checked once at
//! the edge; the on-disk spool that keeps it until NetBox has it; and the drain that pushes
//! spooled events to NetBox (the NetBox work itself is `stages::discovery`).

mod drain;
mod spool;

pub use drain::{DrainError, DrainReport, drain};
pub use spool::{Counters, Ignored, IgnoredLease, Rejected, Spool, SpoolError};

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What happened to a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LeaseEventKind {
    /// A new lease (Kea `leases4_committed`, dhcpd `on commit`, dnsmasq `add`).
    Commit,
    /// The same lease again (Kea `lease4_renew`, dnsmasq `old`).
    Renew,
    /// The client gave the lease back.
    Release,
    /// The lease ran out.
    Expire,
}

impl LeaseEventKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Commit => "commit",
            Self::Renew => "renew",
            Self::Release => "release",
            Self::Expire => "expire",
        }
    }

    /// Whether the client holds the address after this event.
    pub const fn holds(self) -> bool {
        matches!(self, Self::Commit | Self::Renew)
    }
}

/// An Ethernet MAC, normalised to NetBox's form (`AA:BB:CC:DD:EE:FF`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac([u8; 6]);

impl FromStr for Mac {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex: String = s
            .chars()
            .filter(|c| !matches!(c, ':' | '-' | '.'))
            .collect();
        let bad = || {
            format!(
                "{:?} is not an Ethernet MAC address (expected six hex octets, e.g. 02:00:00:aa:bb:01)",
                truncate(s)
            )
        };
        // Not ASCII: a multi-byte character would split the octet slices below mid-character.
        if hex.len() != 12 || s.len() > 17 || !hex.is_ascii() {
            return Err(bad());
        }
        let mut octets = [0u8; 6];
        for (i, octet) in octets.iter_mut().enumerate() {
            *octet = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Self(octets))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02X}:{b:02X}:{c:02X}:{d:02X}:{e:02X}:{g:02X}")
    }
}

impl Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The longest hostname DNS allows; anything longer is not a hostname.
const MAX_HOSTNAME: usize = 253;

fn truncate(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s.to_owned()
    }
}

/// Parses a lease address: a unicast IPv4 address a DHCP server could hand out.
pub fn parse_lease_ip(s: &str) -> Result<Ipv4Addr, String> {
    let ip: Ipv4Addr = s
        .trim()
        .parse()
        .map_err(|_| format!("{:?} is not an IPv4 address", truncate(s)))?;
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback() {
        return Err(format!("{ip} is not an address a DHCP server leases"));
    }
    Ok(ip)
}

/// Checks a client-supplied hostname (DHCP option 12): letters, digits, `-`, `_` and `.`.
pub fn parse_hostname(s: &str) -> Result<String, String> {
    if s.len() > MAX_HOSTNAME {
        return Err(format!(
            "the hostname is {} bytes long; at most {MAX_HOSTNAME} are allowed",
            s.len()
        ));
    }
    if let Some(bad) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "the hostname {:?} holds {bad:?}; only letters, digits, '-', '_' and '.' are allowed",
            truncate(s)
        ));
    }
    Ok(s.to_owned())
}

/// An IPv4 subnet as `address/length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub len: u8,
}

impl FromStr for Subnet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "{:?} is not an IPv4 subnet (e.g. 10.213.0.0/24)",
                truncate(s)
            )
        };
        let (network, len) = s.trim().split_once('/').ok_or_else(bad)?;
        let network: Ipv4Addr = network.parse().map_err(|_| bad())?;
        let len: u8 = len.parse().map_err(|_| bad())?;
        if len > 32 {
            return Err(bad());
        }
        Ok(Self { network, len })
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.len)
    }
}

impl Serialize for Subnet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subnet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// One lease event, as spooled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseEvent {
    pub kind: LeaseEventKind,
    pub mac: Mac,
    pub ip: Ipv4Addr,
    #[serde(default)]
    pub hostname: Option<String>,
    /// The subnet the DHCP server says the lease is from (`10.213.0.0/24`), when it says. Only
    /// compared with NetBox's prefix: the prefix length always comes from NetBox.
    #[serde(default)]
    pub subnet: Option<Subnet>,
    /// Which DHCP server reported it (free text from the hook script, for the journal).
    pub server: String,
    pub received_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_in_every_usual_spelling_normalise_to_netbox_form() {
        for spelling in [
            "02:00:00:aa:bb:01",
            "02-00-00-AA-BB-01",
            "020000aabb01",
            "0200.00aa.bb01",
        ] {
            assert_eq!(
                spelling.parse::<Mac>().expect(spelling).to_string(),
                "02:00:00:AA:BB:01"
            );
        }
        for bad in [
            "",
            "02:00:00:aa:bb",
            "02:00:00:aa:bb:01:02",
            "zz:00:00:aa:bb:01",
            "1:2:0:0:aa:bb:1",
            "a0AééA0éa",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
        let huge = "a".repeat(10_000);
        let err = huge.parse::<Mac>().expect_err("huge");
        assert!(
            err.len() < 200,
            "the message quotes a bounded excerpt: {err}"
        );
    }

    #[test]
    fn lease_addresses_are_unicast_ipv4() {
        assert_eq!(
            parse_lease_ip("10.213.0.100"),
            Ok(Ipv4Addr::new(10, 213, 0, 100))
        );
        for bad in [
            "",
            "10.213.0",
            "10.213.0.256",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "10.0.0.1/24",
        ] {
            assert!(parse_lease_ip(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hostnames_are_bounded_and_plain() {
        assert_eq!(parse_hostname("bmc-01.lab"), Ok("bmc-01.lab".to_owned()));
        assert!(parse_hostname(&"a".repeat(254)).is_err());
        assert!(parse_hostname("bmc 01").is_err());
        assert!(parse_hostname("bmc;rm -rf").is_err());
    }
}
