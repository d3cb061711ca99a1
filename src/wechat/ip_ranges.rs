//! Sets of IP addresses given as plain addresses and CIDR ranges, IPv4 and IPv6: what
//! `WXLOGIN_CALLBACK_IPS` lists, and what WeChat's `getcallbackip` answers.

use std::net::IpAddr;

use ipnet::IpNet;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpRanges(Vec<IpNet>);

/// An entry that is neither an address nor a range.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an IP address or a CIDR range")]
pub struct BadRange(pub String);

impl IpRanges {
    /// Each entry an address (`203.0.113.7`, `2001:db8::1`) or a range (`203.0.113.0/24`).
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, BadRange> {
        entries
            .into_iter()
            .map(|entry| {
                let entry = entry.trim();
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| BadRange(entry.to_owned()))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// An IPv4 client on an IPv6 socket (`::ffff:203.0.113.7`) counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|range| range.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_and_ranges_of_both_families() {
        let ranges =
            IpRanges::parse(["203.0.113.7", " 198.51.100.0/25", "2001:db8::/32", "::1"]).unwrap();
        for inside in [
            "203.0.113.7",
            "198.51.100.0",
            "198.51.100.127",
            "2001:db8:ffff::1",
            "::1",
            "::ffff:203.0.113.7",
        ] {
            assert!(ranges.contains(ip(inside)), "{inside}");
        }
        for outside in [
            "203.0.113.8",
            "198.51.100.128",
            "2001:db9::1",
            "127.0.0.1",
            "::2",
        ] {
            assert!(!ranges.contains(ip(outside)), "{outside}");
        }
        assert!(!IpRanges::parse([]).unwrap().contains(ip("127.0.0.1")));
    }

    #[test]
    fn anything_else_is_named() {
        for bad in [
            "",
            "wechat",
            "10.0.0.0/33",
            "10.0.0",
            "1.2.3.4:80",
            "::1/129",
        ] {
            let error = IpRanges::parse(["10.0.0.1", bad]).unwrap_err();
            assert_eq!(error.0, bad.trim());
        }
    }
}
