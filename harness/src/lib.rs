//! The scenario runner (see issue: harness).
