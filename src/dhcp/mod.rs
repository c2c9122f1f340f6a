//! The DHCP hook's side of discovery: a lease event as the hook hands it over, checked once at
//! the edge; the on-disk spool that keeps it until NetBox has it; and the drain that pushes
//! spooled events to NetBox (the NetBox work itself is `discovery`), with its
//! decisions (superseding, per-MAC retries, outages) in `schedule`.

pub mod discovery;
mod drain;
mod schedule;
mod spool;

pub use drain::{DrainError, DrainReport, LeaseSink, NetBoxSink, drain};
pub use spool::{Counters, Ignored, IgnoredLease, Listing, Spool, SpoolError};

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
    /// Six octets as twelve hex digits, separated by `:`, `-` or `.` anywhere (every spelling
    /// DHCP servers and operators use). Works on characters, never on byte offsets: a hook may
    /// hand over any bytes at all.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "{} is not an Ethernet MAC address (expected six hex octets, e.g. 02:00:00:aa:bb:01)",
                quoted(s)
            )
        };
        if s.len() > 17 {
            return Err(bad());
        }
        let mut octets = [0u8; 6];
        let mut nibbles = 0usize;
        for c in s.chars().filter(|c| !matches!(c, ':' | '-' | '.')) {
            // `to_digit` takes exactly 0-9, a-f, A-F: no sign, no other script's digits.
            let nibble = c.to_digit(16).ok_or_else(bad)?;
            let octet = octets.get_mut(nibbles / 2).ok_or_else(bad)?;
            *octet = (*octet << 4) | nibble as u8;
            nibbles += 1;
        }
        if nibbles != 12 {
            return Err(bad());
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

/// How much of a refused value a message quotes, escaped.
const QUOTED_CHARS: usize = 60;

/// `s` in quotes, escaped as Rust debug-prints it, cut after about [`QUOTED_CHARS`] characters
/// of the escaped form: a message quotes what it refused, and a hook's input may be long or
/// unprintable (one character can escape to ten).
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        if out.chars().count() > QUOTED_CHARS {
            out.push('…');
            break;
        }
        out.extend(c.escape_debug());
    }
    out.push('"');
    out
}

/// Parses a lease address: a unicast IPv4 address a DHCP server could hand out.
pub fn parse_lease_ip(s: &str) -> Result<Ipv4Addr, String> {
    let ip: Ipv4Addr = s
        .trim()
        .parse()
        .map_err(|_| format!("{} is not an IPv4 address", quoted(s)))?;
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
            "the hostname {} holds {bad:?}; only letters, digits, '-', '_' and '.' are allowed",
            quoted(s)
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
        let bad = || format!("{} is not an IPv4 subnet (e.g. 10.213.0.0/24)", quoted(s));
        let (network, len) = s.trim().split_once('/').ok_or_else(bad)?;
        let network: Ipv4Addr = network.parse().map_err(|_| bad())?;
        // `u8::from_str` takes a sign (`+24`): only plain digits are a length.
        if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
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
pub(crate) mod tests {
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
    fn a_mac_is_hex_digits_only_whatever_the_bytes() {
        for bad in [
            "0é000000000",
            "0é:00:00:00:00:0",
            "+f0000000000",
            "+f:00:00:00:00:00",
            "٠٢0000aabb01",
            "02:00:00:aa:bb:0\u{301}",
        ] {
            let err = bad.parse::<Mac>().expect_err(bad);
            assert!(err.contains("is not an Ethernet MAC address"), "{err}");
        }
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

    /// Property tests of every parser a DHCP hook's arguments meet: whatever the input, an
    /// answer and never a panic. Run longer by hand:
    /// `PROPTEST_CASES=100000 cargo test --release --lib properties::`.
    pub(crate) mod properties {
        use proptest::prelude::*;

        use super::super::*;

        /// Strings at the edges of the formats: hex digits and separators mixed with signs,
        /// spaces and characters of more than one byte (a slice by byte offset lands inside
        /// one), next to arbitrary text.
        pub(crate) fn mac_like() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                // Twelve bytes, one of them the second byte of a two-byte character.
                (0usize..5).prop_flat_map(|k| {
                    proptest::string::string_regex(&format!(
                        "[0-9a-f]{{{}}}é[0-9a-f]{{{}}}",
                        1 + 2 * k,
                        9 - 2 * k
                    ))
                    .expect("a valid pattern")
                }),
                "[0-9a-fé]{10,13}",
                "[0-9a-fA-F:.+ -]{0,18}",
                "[0-9a-fA-F:.é٣ßＡ\u{301}+-]{0,20}",
            ]
        }

        fn ip_like() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                "[0-9.]{0,16}",
                "[0-9. /+é-]{0,20}",
                any::<[u8; 4]>().prop_map(|o| Ipv4Addr::from(o).to_string()),
            ]
        }

        fn subnet_like() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                "[0-9./+ é]{0,20}",
                (any::<[u8; 4]>(), 0u16..40, "[+ ]?")
                    .prop_map(|(o, len, sign)| format!("{}/{sign}{len}", Ipv4Addr::from(o))),
            ]
        }

        proptest! {
            #[test]
            fn mac_parsing_never_panics_and_a_parsed_mac_round_trips(s in mac_like()) {
                match s.parse::<Mac>() {
                    Ok(mac) => {
                        let shown = mac.to_string();
                        prop_assert_eq!(shown.parse::<Mac>(), Ok(mac));
                        let digits: String =
                            s.chars().filter(|c| !matches!(c, ':' | '-' | '.')).collect();
                        prop_assert_eq!(shown.replace(':', ""), digits.to_uppercase());
                    }
                    Err(message) => prop_assert!(message.len() < 200, "{}", message),
                }
            }

            #[test]
            fn every_mac_in_every_usual_spelling_parses(
                octets in any::<[u8; 6]>(),
                separator in prop::sample::select(vec![":", "-", ""]),
                upper in any::<bool>(),
            ) {
                let hex: Vec<String> = octets.iter().map(|o| format!("{o:02x}")).collect();
                let mut spelled = hex.join(separator);
                if upper {
                    spelled = spelled.to_uppercase();
                }
                prop_assert_eq!(spelled.parse::<Mac>(), Ok(Mac(octets)));
            }

            #[test]
            fn lease_address_parsing_never_panics(s in ip_like()) {
                match parse_lease_ip(&s) {
                    Ok(ip) => {
                        prop_assert!(!(ip.is_unspecified() || ip.is_broadcast()
                            || ip.is_multicast() || ip.is_loopback()));
                        prop_assert_eq!(parse_lease_ip(&ip.to_string()), Ok(ip));
                    }
                    Err(message) => prop_assert!(message.len() < 200, "{}", message),
                }
            }

            #[test]
            fn hostname_checking_never_panics(s in prop_oneof![any::<String>(), "[a-zA-Z0-9._é; -]{0,300}"]) {
                match parse_hostname(&s) {
                    Ok(name) => {
                        prop_assert_eq!(&name, &s);
                        prop_assert!(name.len() <= MAX_HOSTNAME);
                        prop_assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')));
                    }
                    Err(message) => prop_assert!(message.len() < 200, "{}", message),
                }
            }

            #[test]
            fn subnet_parsing_never_panics_and_a_parsed_subnet_round_trips(s in subnet_like()) {
                match s.parse::<Subnet>() {
                    Ok(subnet) => {
                        prop_assert!(subnet.len <= 32);
                        prop_assert_eq!(subnet.to_string().parse::<Subnet>(), Ok(subnet));
                    }
                    Err(message) => prop_assert!(message.len() < 200, "{}", message),
                }
            }
        }
    }
}
