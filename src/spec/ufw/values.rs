//! The values of `ufw/rules.yaml`, each checked where it is read: they end up in `ufw`'s argv
//! and in its rules files, so anything but a well-formed address, port or plain comment is
//! refused here rather than handed on.

use super::model::{Net, Ports};
use std::net::IpAddr;

/// Service names a `port:` may use, and their port. A short fixed list rather than the host's
/// `/etc/services`: the same file means the same rule on every host. The name stands for the
/// port only; `proto` is whatever the rule says (omitted: tcp and udp).
pub const SERVICES: &[(&str, u16)] = &[
    ("ssh", 22),
    ("smtp", 25),
    ("domain", 53),
    ("http", 80),
    ("ntp", 123),
    ("https", 443),
    ("smtps", 465),
    ("submission", 587),
    ("imaps", 993),
    ("pop3s", 995),
];

/// The longest comment accepted, in characters (ufw stores it hex-encoded in its rules files and
/// shows it in `ufw status`; a plan line should stay readable).
pub const MAX_COMMENT_CHARS: usize = 80;

/// `any`, an address or a network (`192.0.2.3`, `192.0.2.0/24`, `2001:db8::/32`), to its
/// canonical form. None for `any`.
pub fn address(text: &str) -> Result<Option<Net>, String> {
    let t = text.trim();
    if t == "any" {
        return Ok(None);
    }
    let (ip, prefix) = match t.split_once('/') {
        Some((ip, p)) => (ip, Some(p)),
        None => (t, None),
    };
    let Ok(addr) = ip.parse::<IpAddr>() else {
        return Err(format!("`{}` is not an IPv4 or IPv6 address", shown(ip)));
    };
    if let IpAddr::V6(v6) = addr {
        if v6.to_ipv4_mapped().is_some() {
            return Err(format!(
                "`{}` is an IPv4-mapped IPv6 address, which ufw does not match as IPv4",
                shown(t)
            ));
        }
    }
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let Some(prefix) = prefix else {
        return Ok(Some(Net::host(addr)));
    };
    let len = match prefix.parse::<u8>() {
        Ok(n) if n <= max && prefix.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => {
            return Err(format!(
                "`/{}` is not a prefix length (0 to {max})",
                shown(prefix)
            ))
        }
    };
    if len == 0 {
        return Err(format!("`{}` is every address", shown(t)));
    }
    match Net::new(addr, len) {
        Some(net) => Ok(Some(net)),
        None => {
            let Some(net) = network_of(addr, len) else {
                return Err(format!("`{}` is not a network", shown(t)));
            };
            Err(format!(
                "`{}` has host bits set: the network is `{net}`",
                shown(t)
            ))
        }
    }
}

/// The network `addr/len` lies in.
fn network_of(addr: IpAddr, len: u8) -> Option<Net> {
    let masked = match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6((u128::from(a) & mask).into())
        }
    };
    Net::new(masked, len)
}

/// A port number (1-65535), a range `lo:hi` (lo < hi), or a name of [`SERVICES`].
pub fn port_text(text: &str) -> Result<Ports, String> {
    let t = text.trim();
    if let Some((lo, hi)) = t.split_once(':') {
        let (lo, hi) = (port_number(lo)?, port_number(hi)?);
        if lo >= hi {
            return Err(format!(
                "the range `{}` must go from a lower port to a higher one",
                shown(t)
            ));
        }
        return Ok(Ports::Range(lo, hi));
    }
    if t.bytes().all(|b| b.is_ascii_digit()) && !t.is_empty() {
        return port_number(t).map(Ports::One);
    }
    if t.contains('-') && t.split('-').all(|p| p.bytes().all(|b| b.is_ascii_digit())) {
        return Err(format!(
            "`{}` is not a port: a range is written `lo:hi`",
            shown(t)
        ));
    }
    match SERVICES.iter().find(|(name, _)| *name == t) {
        Some((_, port)) => Ok(Ports::One(*port)),
        None => Err(format!(
            "`{}` is not a port number or a known service name",
            shown(t)
        )),
    }
}

/// A port number from an integer of the YAML.
pub fn port_int(n: i64) -> Result<Ports, String> {
    match u16::try_from(n) {
        Ok(p) if p > 0 => Ok(Ports::One(p)),
        _ => Err(format!("{n} is not a port (1 to 65535)")),
    }
}

fn port_number(text: &str) -> Result<u16, String> {
    let t = text.trim();
    match t.parse::<u16>() {
        Ok(p) if p > 0 && t.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
        _ => Err(format!("`{}` is not a port (1 to 65535)", shown(t))),
    }
}

/// A comment, trimmed: at most [`MAX_COMMENT_CHARS`] characters, none of them a control
/// character (newline, tab, escape), a line or paragraph separator (U+2028, U+2029), a
/// bidirectional override or isolate (U+202A-U+202E, U+2066-U+2069, U+200E, U+200F, U+061C:
/// they reorder what `ufw status`, a terminal or the status page shows, so a rule could read
/// as another), a quote, a backslash or a backtick. ufw takes the comment as one argument but
/// refuses a `'` in it, and it is shown back in `ufw status` and on the status page.
pub fn comment(text: &str) -> Result<String, String> {
    let t = text.trim();
    if let Some(c) = t
        .chars()
        .find(|c| c.is_control() || matches!(c, '\'' | '"' | '\\' | '`') || is_layout_char(*c))
    {
        return Err(format!(
            "the comment holds {}, which ufw comments may not",
            match c {
                '\'' => "a quote (')".to_string(),
                '"' => "a double quote (\")".to_string(),
                '\\' => "a backslash".to_string(),
                '`' => "a backtick".to_string(),
                c if is_layout_char(c) => format!(
                    "the invisible layout character U+{:04X} (a line separator or a text direction mark)",
                    c as u32
                ),
                c => format!("the control character U+{:04X}", c as u32),
            }
        ));
    }
    let n = t.chars().count();
    if n > MAX_COMMENT_CHARS {
        return Err(format!(
            "the comment is {n} characters, over the limit of {MAX_COMMENT_CHARS}"
        ));
    }
    Ok(t.to_string())
}

/// Line and paragraph separators and the marks that change the direction text is shown in.
fn is_layout_char(c: char) -> bool {
    matches!(
        c,
        '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
            | '\u{200E}' | '\u{200F}' | '\u{061C}'
    )
}

/// A value from the file, cut short and with control characters escaped, for an error message.
pub fn shown(text: &str) -> String {
    let mut out: String = text.chars().take(60).flat_map(char::escape_debug).collect();
    if text.chars().count() > 60 {
        out.push('…');
    }
    out
}
