//! Parsers for the sysfs attributes a guest agent reads:
//! `/sys/class/net/IFACE/{operstate,carrier,carrier_changes}` and the virtio
//! device's `features` string.

use super::{Operstate, ParseError};

/// Parses `operstate` (`up`, `down`, `unknown`, ...).
pub fn parse_operstate(text: &str) -> Result<Operstate, ParseError> {
    text.trim().parse().map_err(|_| ParseError::BadAttribute {
        attribute: "operstate",
        value: text.trim().to_string(),
    })
}

/// Parses `carrier`: `1` on, `0` off. Reading it fails with EINVAL while the
/// interface is down, which leaves an empty value or the error text: both
/// give `None`.
pub fn parse_carrier(text: &str) -> Result<Option<bool>, ParseError> {
    match text.trim() {
        "1" => Ok(Some(true)),
        "0" => Ok(Some(false)),
        t if t.is_empty() || t.contains("Invalid argument") => Ok(None),
        t => Err(ParseError::BadAttribute {
            attribute: "carrier",
            value: t.to_string(),
        }),
    }
}

/// Parses a decimal counter such as `carrier_changes`.
pub fn parse_counter(attribute: &'static str, text: &str) -> Result<u64, ParseError> {
    text.trim().parse().map_err(|_| ParseError::BadAttribute {
        attribute,
        value: text.trim().to_string(),
    })
}

/// Parses a virtio device's `features` attribute: one `0`/`1` character per
/// feature bit, bit 0 first (Linux prints 64).
pub fn parse_virtio_features(text: &str) -> Result<u64, ParseError> {
    let t = text.trim();
    let bad = || ParseError::BadAttribute {
        attribute: "features",
        value: t.to_string(),
    };
    if t.is_empty() || t.len() > 64 {
        return Err(bad());
    }
    t.bytes()
        .enumerate()
        .try_fold(0u64, |bits, (i, b)| match b {
            b'1' => Ok(bits | 1u64 << i),
            b'0' => Ok(bits),
            _ => Err(bad()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operstate_values() {
        assert_eq!(parse_operstate("unknown\n"), Ok(Operstate::Unknown));
        assert_eq!(parse_operstate("up"), Ok(Operstate::Up));
        assert!(matches!(
            parse_operstate("sideways"),
            Err(ParseError::BadAttribute {
                attribute: "operstate",
                ..
            })
        ));
    }

    #[test]
    fn carrier_values() {
        assert_eq!(parse_carrier("1\n"), Ok(Some(true)));
        assert_eq!(parse_carrier("0"), Ok(Some(false)));
        assert_eq!(parse_carrier(""), Ok(None));
        assert_eq!(parse_carrier("cat: read error: Invalid argument"), Ok(None));
        assert!(parse_carrier("2").is_err());
    }

    #[test]
    fn counters() {
        assert_eq!(parse_counter("carrier_changes", " 4\n"), Ok(4));
        assert!(parse_counter("carrier_changes", "-1").is_err());
        assert!(parse_counter("carrier_changes", "").is_err());
    }

    #[test]
    fn virtio_features_bit_order() {
        // VERSION_1 (32) | STATUS (16) | MAC (5), as the env experiment's
        // driver negotiated: 0x100010020.
        let mut s = vec![b'0'; 64];
        for bit in [5, 16, 32] {
            s[bit] = b'1';
        }
        let s = String::from_utf8(s).unwrap();
        assert_eq!(parse_virtio_features(&format!("{s}\n")), Ok(0x1_0001_0020));
        assert_eq!(parse_virtio_features("1"), Ok(1));
        assert!(parse_virtio_features("0102").is_err());
        assert!(parse_virtio_features(&"0".repeat(65)).is_err());
        assert!(parse_virtio_features("").is_err());
    }
}
