//! Parser for `ip link show` output, from iproute2 and from busybox.
//!
//! Both print a header line per interface, then indented lines:
//!
//! ```text
//! 2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc pfifo_fast state UP mode DEFAULT group default qlen 1000
//!     link/ether 52:54:00:12:34:56 brd ff:ff:ff:ff:ff:ff
//! ```
//!
//! busybox's header has no `state` (nor `mode`, `group`): the parser then
//! reports the operstate as not reported, never guessed from the flags.
//! Recognised on the header line: `mtu N`, `state S`, and two pairs only the
//! lab's kernel-only probe prints in the same format, `carrier 0|1` and
//! `carrier_changes N`. With `ip -s -s`, the `transns` column of the
//! `TX errors:` statistics is the interface's carrier_changes. Other lines
//! (`-d` details, addresses) are skipped.

use super::{LinkView, Operstate, ParseError};

/// One interface as `ip link show` printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpLinkEntry {
    /// The interface index.
    pub ifindex: u32,
    /// The name, without the `@peer` suffix.
    pub name: String,
    /// The `@peer` suffix iproute2 prints for stacked devices (veth, vlan).
    pub peer: Option<String>,
    /// The flags, in the order printed.
    pub flags: Vec<String>,
    /// `mtu N`.
    pub mtu: Option<u32>,
    /// `state S`; `None` when the line has no state (busybox).
    pub state: Option<Operstate>,
    /// `carrier 0|1` (kernel-only probe).
    pub carrier: Option<bool>,
    /// `carrier_changes N` (kernel-only probe) or the `transns` statistic.
    pub carrier_changes: Option<u64>,
    /// The address on the `link/ether` line.
    pub mac: Option<String>,
}

impl IpLinkEntry {
    /// The link view this entry gives on its own (no sysfs, no features).
    pub fn view(&self) -> LinkView {
        let has = |f: &str| self.flags.iter().any(|x| x == f);
        let carrier = self.carrier.or(if has("NO-CARRIER") {
            Some(false)
        } else if has("LOWER_UP") {
            Some(true)
        } else {
            None
        });
        LinkView {
            ifindex: self.ifindex,
            name: self.name.clone(),
            flags: self.flags.clone(),
            mtu: self.mtu,
            state: self.state,
            carrier,
            carrier_changes: self.carrier_changes,
            mac: self.mac.clone(),
            features: None,
        }
    }
}

/// Parses every interface in `ip link show` output.
pub fn parse_ip_link(text: &str) -> Result<Vec<IpLinkEntry>, ParseError> {
    let mut entries: Vec<IpLinkEntry> = Vec::new();
    let mut lines = text.lines().map(|l| l.trim_end_matches('\r')).peekable();
    while let Some(line) = lines.next() {
        if is_header(line) {
            entries.push(parse_header(line)?);
            continue;
        }
        let Some(entry) = entries.last_mut() else {
            continue;
        };
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("link/ether ") {
            entry.mac = rest.split_whitespace().next().map(str::to_string);
        } else if let Some(columns) = trimmed.strip_prefix("TX errors:") {
            let names: Vec<&str> = columns.split_whitespace().collect();
            if let (Some(col), Some(values)) =
                (names.iter().position(|n| *n == "transns"), lines.peek())
            {
                if let Some(v) = values.split_whitespace().nth(col) {
                    entry.carrier_changes = v.parse().ok().or(entry.carrier_changes);
                }
            }
        }
    }
    if entries.is_empty() {
        return Err(ParseError::NoInterface);
    }
    Ok(entries)
}

/// Whether a line starts like `N: NAME: <`.
fn is_header(line: &str) -> bool {
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && line[digits..].starts_with(": ") && line.contains(": <")
}

fn parse_header(line: &str) -> Result<IpLinkEntry, ParseError> {
    let bad = || ParseError::BadHeader {
        line: line.to_string(),
    };
    let (index, rest) = line.split_once(": ").ok_or_else(bad)?;
    let ifindex = index.parse().map_err(|_| bad())?;
    let (names, rest) = rest.split_once(": <").ok_or_else(bad)?;
    let (name, peer) = match names.split_once('@') {
        Some((n, p)) => (n, Some(p.to_string())),
        None => (names, None),
    };
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(bad());
    }
    let (flags, tail) = rest.split_once('>').ok_or_else(bad)?;
    let flags = flags
        .split(',')
        .filter(|f| !f.is_empty())
        .map(str::to_string)
        .collect();
    let mut entry = IpLinkEntry {
        ifindex,
        name: name.to_string(),
        peer,
        flags,
        mtu: None,
        state: None,
        carrier: None,
        carrier_changes: None,
        mac: None,
    };
    let tokens: Vec<&str> = tail.split_whitespace().collect();
    for pair in tokens.windows(2) {
        let (key, value) = (pair[0], pair[1]);
        match key {
            "mtu" => entry.mtu = Some(value.parse().map_err(|_| bad())?),
            "state" => entry.state = Some(value.parse().map_err(|_| bad())?),
            "carrier_changes" => entry.carrier_changes = Some(value.parse().map_err(|_| bad())?),
            "carrier" => {
                entry.carrier = match value {
                    "1" => Some(true),
                    "0" => Some(false),
                    _ => return Err(bad()),
                }
            }
            _ => {}
        }
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_probe_pairs_on_the_header() {
        let e = parse_ip_link(
            "2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 state UNKNOWN carrier 1 carrier_changes 0\n",
        )
        .unwrap();
        assert_eq!(e.len(), 1);
        let v = e[0].view();
        assert_eq!(v.state, Some(Operstate::Unknown));
        assert_eq!(v.carrier, Some(true));
        assert_eq!(v.carrier_changes, Some(0));
        assert_eq!(v.mac, None);
    }

    #[test]
    fn several_interfaces_and_noise() {
        let text = "random serial noise\n\
            1: lo: <LOOPBACK> mtu 65536 qdisc noop state DOWN mode DEFAULT group default qlen 1000\n\
            \x20   link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n\
            2: eth0: <> mtu 1500 qdisc noop state DOWN qlen 1000\r\n\
            \x20   link/ether 52:54:00:00:00:01 brd ff:ff:ff:ff:ff:ff\n";
        let e = parse_ip_link(text).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].name, "lo");
        assert_eq!(e[0].mac, None);
        assert!(e[1].flags.is_empty());
        assert_eq!(e[1].mac.as_deref(), Some("52:54:00:00:00:01"));
        assert_eq!(e[1].view().carrier, None);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert_eq!(parse_ip_link(""), Err(ParseError::NoInterface));
        assert_eq!(
            parse_ip_link("Device \"eth0\" does not exist.\n"),
            Err(ParseError::NoInterface)
        );
        for line in [
            "2: eth0: <UP> mtu big",
            "2: eth0: <UP mtu 1500",
            "2: : <UP> mtu 1500",
            "99999999999: eth0: <UP> mtu 1500",
            "2: eth0: <UP> mtu 1500 state SIDEWAYS",
            "2: eth0: <UP> mtu 1500 carrier 7",
        ] {
            assert!(
                matches!(parse_ip_link(line), Err(ParseError::BadHeader { .. })),
                "{line}"
            );
        }
    }
}
