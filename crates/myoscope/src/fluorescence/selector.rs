//! Which channel the user asked for: a name from the file's metadata (`DAPI`) or a position.
//!
//! Positions are **1-based**: `1` is the first channel, as Fiji, QuPath and inForm number
//! them and as the fallback names `channel 1..N` read. Pages that are not channels
//! (thumbnails, pyramid levels) are not counted, so in an inForm `component_data.tif` with
//! components Alexa 594, Cy3, Cy5, DAPI, FITC, `4` and `dapi` pick the same plane.
use anyhow::{bail, Result};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelSelector {
    /// Matched case-insensitively; if nothing matches exactly, also ignoring spaces, `-` and
    /// `_` (`alexa594` finds `Alexa 594`).
    Name(String),
    /// 1-based position among the file's channels.
    Position(usize),
}

impl FromStr for ChannelSelector {
    type Err = anyhow::Error;

    /// A string of digits is a 1-based position; anything else is a name.
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.is_empty() {
            bail!("empty channel: give a name such as DAPI or a 1-based position such as 1");
        }
        if s.chars().all(|c| c.is_ascii_digit()) {
            let n: usize = s
                .parse()
                .map_err(|_| anyhow::anyhow!("channel position {s} is too large"))?;
            if n == 0 {
                bail!(
                    "channel positions are 1-based: use 1 for the first channel (0 is not a \
                     position)"
                );
            }
            Ok(ChannelSelector::Position(n))
        } else {
            Ok(ChannelSelector::Name(s.to_string()))
        }
    }
}

impl fmt::Display for ChannelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelSelector::Name(n) => write!(f, "channel '{n}'"),
            ChannelSelector::Position(p) => write!(f, "channel {p} (1-based)"),
        }
    }
}

/// Indices (0-based) of `names` that `wanted` matches: exact case-insensitive matches if any,
/// otherwise matches that also ignore spaces, `-` and `_`.
pub fn match_name(names: &[&str], wanted: &str) -> Vec<usize> {
    let exact: Vec<usize> = (0..names.len())
        .filter(|&i| names[i].trim().eq_ignore_ascii_case(wanted.trim()))
        .collect();
    if !exact.is_empty() {
        return exact;
    }
    let squash = |s: &str| -> String {
        s.chars()
            .filter(|c| !c.is_whitespace() && *c != '-' && *c != '_')
            .flat_map(char::to_lowercase)
            .collect()
    };
    let w = squash(wanted);
    (0..names.len())
        .filter(|&i| !w.is_empty() && squash(names[i]) == w)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_positions() {
        assert_eq!(
            "DAPI".parse::<ChannelSelector>().unwrap(),
            ChannelSelector::Name("DAPI".into())
        );
        assert_eq!(
            " 4 ".parse::<ChannelSelector>().unwrap(),
            ChannelSelector::Position(4)
        );
        let e = "0".parse::<ChannelSelector>().unwrap_err().to_string();
        assert!(e.contains("1-based"), "{e}");
        assert!("".parse::<ChannelSelector>().is_err());
        assert!("99999999999999999999999"
            .parse::<ChannelSelector>()
            .is_err());
        // A name that merely starts with a digit is a name.
        assert_eq!(
            "4plex".parse::<ChannelSelector>().unwrap(),
            ChannelSelector::Name("4plex".into())
        );
    }

    #[test]
    fn name_matching_is_forgiving_but_prefers_exact() {
        let names = ["Alexa 594", "Cy3", "Cy5", "DAPI", "FITC", "Alexa594"];
        assert_eq!(match_name(&names, "dapi"), [3]);
        assert_eq!(match_name(&names, "ALEXA 594"), [0]);
        assert_eq!(match_name(&names, "alexa-594"), [0, 5]);
        assert!(match_name(&names, "Cy7").is_empty());
        assert!(match_name(&names, " ").is_empty());
    }
}
