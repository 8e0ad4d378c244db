//! The RFC 2863 operational state of an interface, as the kernel reports it
//! (`IF_OPER_*`): upper case in `ip link`, lower case in sysfs.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// An interface's operstate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operstate {
    /// `IF_OPER_UNKNOWN`: no link-watch event ever set it (the bug's state).
    Unknown,
    /// `IF_OPER_NOTPRESENT`.
    NotPresent,
    /// `IF_OPER_DOWN`: administratively down, or no carrier.
    Down,
    /// `IF_OPER_LOWERLAYERDOWN`: a stacked device whose lower device is down.
    LowerLayerDown,
    /// `IF_OPER_TESTING`.
    Testing,
    /// `IF_OPER_DORMANT`.
    Dormant,
    /// `IF_OPER_UP`.
    Up,
}

impl Operstate {
    /// Every state, in kernel order.
    pub const ALL: [Operstate; 7] = [
        Self::Unknown,
        Self::NotPresent,
        Self::Down,
        Self::LowerLayerDown,
        Self::Testing,
        Self::Dormant,
        Self::Up,
    ];

    /// The name iproute2 prints (`UP`, `LOWERLAYERDOWN`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "UNKNOWN",
            Self::NotPresent => "NOTPRESENT",
            Self::Down => "DOWN",
            Self::LowerLayerDown => "LOWERLAYERDOWN",
            Self::Testing => "TESTING",
            Self::Dormant => "DORMANT",
            Self::Up => "UP",
        }
    }
}

impl fmt::Display for Operstate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a name that is no operstate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an operstate; valid ones are UP, DOWN, UNKNOWN, LOWERLAYERDOWN, DORMANT, NOTPRESENT, TESTING")]
pub struct UnknownOperstate(pub String);

impl FromStr for Operstate {
    type Err = UnknownOperstate;

    /// Accepts iproute2's upper-case and sysfs's lower-case spellings.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase();
        Self::ALL
            .into_iter()
            .find(|o| o.as_str() == upper)
            .ok_or_else(|| UnknownOperstate(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_round_trip() {
        for o in Operstate::ALL {
            assert_eq!(o.as_str().parse::<Operstate>(), Ok(o));
            assert_eq!(o.as_str().to_lowercase().parse::<Operstate>(), Ok(o));
        }
        assert_eq!(
            "lowerlayerdown\n".parse::<Operstate>(),
            Ok(Operstate::LowerLayerDown)
        );
        assert!("UPP".parse::<Operstate>().is_err());
        assert!("".parse::<Operstate>().is_err());
    }
}
