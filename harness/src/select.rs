//! Choosing which scenarios run: `--filter` by name (substring, or glob with
//! `*` and `?`) and `--shard i/n` (deterministic by sorted name).

use std::fmt;
use std::str::FromStr;

/// Whether `name` matches `pattern`: a glob when the pattern has `*` or
/// `?` (matched against the whole name), a substring otherwise.
pub fn matches(pattern: &str, name: &str) -> bool {
    if pattern.contains(['*', '?']) {
        glob(pattern.as_bytes(), name.as_bytes())
    } else {
        name.contains(pattern)
    }
}

/// Glob match: `*` any run of characters (including `/`), `?` one.
fn glob(p: &[u8], s: &[u8]) -> bool {
    // Iterative matcher with one backtrack point: linear in practice, no
    // recursion on hostile patterns.
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == s[si] => {
                pi += 1;
                si += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// One shard of `n`: `index` counts from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// Which shard, 1..=count.
    pub index: usize,
    /// How many shards.
    pub count: usize,
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a shard; write i/n with 1 <= i <= n, e.g. 2/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if index == 0 || count == 0 || index > count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Keeps the items whose name matches any of `filters` (all when empty),
/// then sorts by name and keeps this shard's part: the k-th name in sorted
/// order goes to shard `k mod n + 1`, so neighbours (often alike in cost)
/// spread over the shards.
pub fn select<T>(
    items: Vec<T>,
    name: impl Fn(&T) -> &str,
    filters: &[String],
    shard: Option<Shard>,
) -> Vec<T> {
    let mut kept: Vec<T> = items
        .into_iter()
        .filter(|t| filters.is_empty() || filters.iter().any(|f| matches(f, name(t))))
        .collect();
    kept.sort_by(|a, b| name(a).cmp(name(b)));
    match shard {
        None => kept,
        Some(s) => kept
            .into_iter()
            .enumerate()
            .filter(|(k, _)| k % s.count + 1 == s.index)
            .map(|(_, t)| t)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substring_and_glob() {
        assert!(matches("prefix", "operstate/prefix-6.1/no-status"));
        assert!(!matches("prefix", "operstate/stock-6.1/status"));
        assert!(matches(
            "operstate/*/no-status",
            "operstate/prefix-6.1/no-status"
        ));
        assert!(!matches(
            "operstate/*/status",
            "operstate/prefix-6.1/no-status"
        ));
        assert!(matches("*6.1?no-status", "operstate/prefix-6.1/no-status"));
        assert!(matches("*", ""));
        assert!(!matches("?", ""));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(!matches("a*b*c", "aXXbYY"));
        // a glob is anchored at both ends
        assert!(!matches("operstate", "x") && !matches("operstate*", "flap/operstate"));
    }

    #[test]
    fn pathological_glob_is_fast() {
        let name = "a".repeat(5000);
        let t = std::time::Instant::now();
        assert!(!matches(&format!("{}b", "*a".repeat(20)), &name));
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn shard_parsing() {
        assert_eq!("2/4".parse(), Ok(Shard { index: 2, count: 4 }));
        for bad in ["0/4", "5/4", "1/0", "1", "a/b", "", "1/2/3"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn shards_partition_the_sorted_selection() {
        let names: Vec<String> = ["e", "a", "d", "b", "c"].map(String::from).to_vec();
        let mut seen = Vec::new();
        for i in 1..=3 {
            let part = select(
                names.clone(),
                |s| s.as_str(),
                &[],
                Some(Shard { index: i, count: 3 }),
            );
            // deterministic whatever the input order
            let mut reversed = names.clone();
            reversed.reverse();
            assert_eq!(
                part,
                select(
                    reversed,
                    |s| s.as_str(),
                    &[],
                    Some(Shard { index: i, count: 3 })
                )
            );
            seen.extend(part);
        }
        seen.sort();
        assert_eq!(seen, ["a", "b", "c", "d", "e"]);
        assert_eq!(
            select(
                names.clone(),
                |s| s.as_str(),
                &[],
                Some(Shard { index: 1, count: 3 })
            ),
            ["a", "d"]
        );
        assert_eq!(
            select(names, |s| s.as_str(), &["b".into(), "d*".into()], None),
            ["b", "d"]
        );
    }
}
