//! `{stack, service, port}` → the host address where that service publishes that container port.
//!
//! The seed's rule is that the backend listens on loopback and Nginx is the only door: a port
//! Docker publishes on every interface is reachable from the network without Nginx (and Docker's
//! published ports are not filtered by ufw's INPUT rules), so such an upstream is refused unless
//! the site says `allow_public_upstream: true`.

use super::site::Upstream;
use super::values::{connect_ip, Refused, UpstreamAddr};
use crate::spec::model::StackSpec;
use std::collections::{BTreeMap, BTreeSet};

/// The stacks a site may name.
pub struct Stacks<'a> {
    /// The stacks read without error.
    pub loaded: &'a BTreeMap<String, StackSpec>,
    /// Every stack folder of the commit that has a compose file, loaded or not: a site naming a
    /// stack that failed to load is not blamed for it (the stack's own errors say what to fix).
    pub in_commit: BTreeSet<String>,
}

pub(super) enum Resolution {
    Address(UpstreamAddr),
    /// The stack is in the commit but has errors: no address, and no error of the site's own.
    Blocked,
    Refused(Refused),
}

impl Stacks<'_> {
    pub(super) fn resolve(&self, up: &Upstream, public_ok: bool) -> Resolution {
        let (stack_name, service_name, port) = match up {
            Upstream::Address(a) => return Resolution::Address(a.clone()),
            Upstream::Service {
                stack,
                service,
                port,
            } => (stack, service, *port),
        };
        let no = |message: String, fix: &str| {
            Resolution::Refused(Refused {
                message,
                fix: fix.to_string(),
            })
        };
        let Some(stack) = self.loaded.get(stack_name) else {
            if self.in_commit.contains(stack_name) {
                return Resolution::Blocked;
            }
            return no(
                format!("no stack {stack_name} in this commit"),
                &format!("add compose/{stack_name}/compose.yaml, or name an existing stack"),
            );
        };
        let Some(service) = stack.services.get(service_name) else {
            if let Some(profiles) = stack.inactive_services.get(service_name) {
                return no(
                    format!(
                        "service {service_name} of {} does not run: none of its profiles ({}) is enabled",
                        stack.compose_file,
                        profiles.join(", ")
                    ),
                    "enable one of its profiles, or point the site at a service that runs",
                );
            }
            return no(
                format!("no service {service_name} in {}", stack.compose_file),
                &format!(
                    "name one of its services ({})",
                    stack
                        .services
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        };
        let publish_fix = format!(
            "publish it on loopback in {}: ports: [\"127.0.0.1:{port}:{port}\"]",
            stack.compose_file
        );
        if service.network_mode.as_deref() == Some("host") {
            return no(
                format!("{stack_name}/{service_name} runs with network_mode: host, so it publishes no port"),
                &format!("write the address it listens on instead, such as upstream: 127.0.0.1:{port}"),
            );
        }
        let bindings: Vec<_> = service
            .ports
            .iter()
            .filter(|p| p.container_port == port && p.protocol == "tcp")
            .collect();
        if bindings.is_empty() {
            return no(
                format!("{stack_name}/{service_name} does not publish container port {port} on the host"),
                &publish_fix,
            );
        }
        // A loopback binding first; then, when allowed, any other.
        let mut best: Option<(UpstreamAddr, bool)> = None;
        let mut ephemeral = false;
        for b in &bindings {
            let Some(host_port) = b.host_port else {
                ephemeral = true;
                continue;
            };
            let (ip, loopback) = connect_ip(&b.host_ip);
            if best.as_ref().is_none_or(|(_, l)| !l && loopback) {
                best = Some((UpstreamAddr::loopback(ip, host_port), loopback));
            }
        }
        match best {
            Some((addr, true)) => Resolution::Address(addr),
            Some((addr, false)) if public_ok => Resolution::Address(addr),
            Some((_, false)) => {
                let shown = bindings
                    .iter()
                    .find(|b| b.host_port.is_some())
                    .map(|b| if b.host_ip.is_empty() { "all interfaces".to_string() } else { b.host_ip.clone() })
                    .unwrap_or_default();
                no(
                    format!(
                        "{stack_name}/{service_name} publishes port {port} on {shown}, not on loopback: it is reachable without Nginx (and Docker's published ports bypass ufw)"
                    ),
                    &format!("{publish_fix}, or set allow_public_upstream: true"),
                )
            }
            None if ephemeral => no(
                format!("{stack_name}/{service_name} publishes container port {port} on a host port Docker picks at each start"),
                &publish_fix,
            ),
            None => no(
                format!("{stack_name}/{service_name} does not publish container port {port} on the host"),
                &publish_fix,
            ),
        }
    }
}
