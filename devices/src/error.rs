//! Error text for logs: an error and all its sources on one line.

/// `e` and its chain of sources, joined by `": "`, e.g. `cannot send a
/// frame: Input/output error (os error 5)`.
pub fn display_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("middle")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn every_source_is_separated() {
        let e = Outer(Middle(std::io::Error::other("inner")));
        assert_eq!(display_chain(&e), "outer: middle: inner");
        assert_eq!(display_chain(&std::io::Error::other("alone")), "alone");
    }
}
