//! This host's addresses, from its interfaces (`getifaddrs(3)`): the preflight's default when
//! the config lists none. Loopback, unspecified and link-local addresses are left out: a public
//! name pointing at one of them can never be validated by Let's Encrypt.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The addresses of the host's interfaces that a public name could point at.
pub fn interface_addresses() -> Result<Vec<IpAddr>, String> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a pointer to a list it allocates into `head`, or fails.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(format!(
            "cannot list this host's interfaces: {}",
            std::io::Error::last_os_error()
        ));
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs made, not yet freed.
        let ifa = unsafe { &*cur };
        let sa = ifa.ifa_addr;
        if !sa.is_null() {
            // SAFETY: a non-null ifa_addr points at a sockaddr whose family says its real type,
            // and the list allocates the whole structure of that family.
            let family = i32::from(unsafe { (*sa).sa_family });
            let ip = match family {
                libc::AF_INET => {
                    let sin = unsafe { &*(sa as *const libc::sockaddr_in) };
                    Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                        sin.sin_addr.s_addr,
                    ))))
                }
                libc::AF_INET6 => {
                    let sin6 = unsafe { &*(sa as *const libc::sockaddr_in6) };
                    Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
                }
                _ => None,
            };
            if let Some(ip) = ip.filter(|ip| public_candidate(*ip)) {
                if !out.contains(&ip) {
                    out.push(ip);
                }
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once; no reference into it outlives this.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// Not loopback, unspecified, or link-local.
pub fn public_candidate(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_unspecified() && !v4.is_link_local(),
        IpAddr::V6(v6) => {
            !v6.is_loopback() && !v6.is_unspecified() && (v6.segments()[0] & 0xFFC0) != 0xFE80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_link_local_are_left_out() {
        for ip in ["127.0.0.1", "::1", "169.254.1.1", "fe80::1", "0.0.0.0"] {
            assert!(!public_candidate(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["192.0.2.10", "10.0.0.5", "2001:db8::1"] {
            assert!(public_candidate(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn the_machine_has_interfaces_and_none_is_loopback() {
        let got = interface_addresses().unwrap();
        assert!(got.iter().all(|ip| !ip.is_loopback()), "{got:?}");
    }
}
