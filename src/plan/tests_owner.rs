//! Ownership per repo: two configs of one instance each see the other's objects, and neither
//! may prune or replace them (issue 12). Plain structs, like `tests.rs`.
