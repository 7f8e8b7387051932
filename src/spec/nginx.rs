//! Nginx sites from the managed repo (`nginx/`): the values a site may hold (`values`), the
//! model (`site`), the reader (`read`, with `parse` for one YAML site and `resolve` for an
//! upstream naming a stack's service) and the renderer (`render`). Pure code: nothing here writes
//! a file on the host or starts Nginx; docs/nginx.md describes the file format.

mod fields;
mod parse;
pub mod read;
pub mod render;
pub mod resolve;
pub mod site;
pub mod values;

pub use read::{read_sites, SITES_DIR};
pub use render::{render, site_text, RenderHost, RenderTls};
pub use resolve::Stacks;
pub use site::{
    Backend, GitmoorExposure, Hsts, Location, LocationAction, ProxyTimeouts, Resolved, SiteDef,
    SiteKind, SiteSpec, Tls, Upstream,
};

#[cfg(test)]
mod tests_read;
#[cfg(test)]
mod tests_render;
