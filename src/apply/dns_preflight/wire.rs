//! The smallest DNS client the preflight needs: one A or AAAA question in a UDP datagram, and
//! the addresses of the answer. Used when `letsencrypt.dns_server` names a server (tests aim it
//! at pebble-challtestsrv; an admin may aim it at a public resolver to see what Let's Encrypt
//! will see, past a local split-horizon DNS). Every offset is bounds-checked: the answer comes
//! from the network.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

/// What a server answered to one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The addresses of the answer section (none: the name exists without that type).
    Addresses(Vec<IpAddr>),
    /// NXDOMAIN: no such name.
    NoSuchName,
}

/// The datagram asking `qtype` for `name` (recursion desired), with id `id`.
pub fn query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, String> {
    let name = name.trim_end_matches('.');
    if name.is_empty() || name.len() > 253 {
        return Err(format!("{name:?} is not a DNS name"));
    }
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // 1 question
    for label in name.split('.') {
        let len = u8::try_from(label.len())
            .ok()
            .filter(|l| (1..=63).contains(l));
        let Some(len) = len.filter(|_| label.is_ascii()) else {
            return Err(format!("{name:?} is not a DNS name"));
        };
        q.push(len);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(q)
}

/// The reply to the question with id `id`. Err for another id (a stray or forged datagram),
/// a server error, a truncated or malformed message.
pub fn parse_reply(msg: &[u8], id: u16) -> Result<Reply, String> {
    let u16_at = |i: usize| -> Result<u16, String> {
        msg.get(i..i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "a DNS answer cut short".to_string())
    };
    if u16_at(0)? != id {
        return Err("a DNS answer to another question".into());
    }
    let flags = u16_at(2)?;
    if flags & 0x8000 == 0 {
        return Err("a DNS message that is not an answer".into());
    }
    if flags & 0x0200 != 0 {
        return Err("a truncated DNS answer".into());
    }
    match flags & 0x000F {
        0 => {}
        3 => return Ok(Reply::NoSuchName),
        2 => return Err("the DNS server failed (SERVFAIL)".into()),
        5 => return Err("the DNS server refused the question (REFUSED)".into()),
        rc => return Err(format!("the DNS server answered with error code {rc}")),
    }
    let (questions, answers) = (u16_at(4)?, u16_at(6)?);
    let mut i = 12;
    for _ in 0..questions {
        i = skip_name(msg, i)? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..answers {
        i = skip_name(msg, i)?;
        let rtype = u16_at(i)?;
        let class = u16_at(i + 2)?;
        let len = usize::from(u16_at(i + 8)?);
        let data = msg
            .get(i + 10..i + 10 + len)
            .ok_or("a DNS answer cut short")?;
        i += 10 + len;
        if class != CLASS_IN {
            continue;
        }
        match (rtype, data.len()) {
            (TYPE_A, 4) => out.push(IpAddr::V4(Ipv4Addr::new(
                data[0], data[1], data[2], data[3],
            ))),
            (TYPE_AAAA, 16) => {
                let mut b = [0u8; 16];
                b.copy_from_slice(data);
                out.push(IpAddr::V6(Ipv6Addr::from(b)));
            }
            // A CNAME (its target's addresses follow in the same answer), or anything else.
            _ => {}
        }
    }
    Ok(Reply::Addresses(out))
}

/// The offset just past the name at `i` (labels, ending in a zero or a compression pointer).
fn skip_name(msg: &[u8], mut i: usize) -> Result<usize, String> {
    loop {
        let len = *msg.get(i).ok_or("a DNS answer cut short")?;
        match len {
            0 => return Ok(i + 1),
            l if l & 0xC0 == 0xC0 => {
                msg.get(i + 1).ok_or("a DNS answer cut short")?;
                return Ok(i + 2);
            }
            l if l & 0xC0 == 0 => i += 1 + usize::from(l),
            _ => return Err("a DNS answer with a bad label".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer to `q` holding `records` (type, rdata), the owner written as a pointer to the
    /// question's name, as servers do.
    fn answer(q: &[u8], rcode: u8, records: &[(u16, &[u8])]) -> Vec<u8> {
        let mut m = q.to_vec();
        m[2] = 0x81;
        m[3] = 0x80 | rcode;
        m[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
        for (t, data) in records {
            m.extend_from_slice(&[0xC0, 12]);
            m.extend_from_slice(&t.to_be_bytes());
            m.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
            m.extend_from_slice(&(data.len() as u16).to_be_bytes());
            m.extend_from_slice(data);
        }
        m
    }

    #[test]
    fn a_question_is_written_as_rfc_1035_says() {
        let q = query(0x1234, "api.example.test.", TYPE_A).unwrap();
        assert_eq!(&q[..12], &[0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&q[12..], b"\x03api\x07example\x04test\x00\x00\x01\x00\x01");
        assert!(query(1, "a..b", TYPE_A).is_err());
        assert!(query(1, &"a".repeat(64), TYPE_A).is_err());
        assert!(query(1, "", TYPE_A).is_err());
    }

    #[test]
    fn addresses_are_read_and_other_records_skipped() {
        let q = query(7, "api.example.test", TYPE_A).unwrap();
        let cname: &[u8] = b"\x03www\xC0\x10";
        let m = answer(&q, 0, &[(5, cname), (TYPE_A, &[203, 0, 113, 9])]);
        assert_eq!(
            parse_reply(&m, 7).unwrap(),
            Reply::Addresses(vec!["203.0.113.9".parse().unwrap()])
        );
        let v6 = "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets();
        let m = answer(&q, 0, &[(TYPE_AAAA, &v6)]);
        assert_eq!(
            parse_reply(&m, 7).unwrap(),
            Reply::Addresses(vec!["2001:db8::1".parse().unwrap()])
        );
        assert_eq!(
            parse_reply(&answer(&q, 3, &[]), 7).unwrap(),
            Reply::NoSuchName
        );
    }

    #[test]
    fn stray_failed_and_cut_answers_are_errors() {
        let q = query(7, "api.example.test", TYPE_A).unwrap();
        let m = answer(&q, 0, &[(TYPE_A, &[203, 0, 113, 9])]);
        assert!(parse_reply(&m, 8).unwrap_err().contains("another question"));
        assert!(parse_reply(&answer(&q, 2, &[]), 7)
            .unwrap_err()
            .contains("SERVFAIL"));
        assert!(parse_reply(&q, 7).unwrap_err().contains("not an answer"));
        for cut in 0..m.len() {
            assert!(parse_reply(&m[..cut], 7).is_err(), "cut at {cut}");
        }
    }
}
