//! The two facts gitmoor needs from a certificate — when it ends (`notAfter`) and which DNS
//! names it covers (subjectAltName) — read in process from the PEM file certbot wrote, with a
//! small DER reader: no `openssl` process per certificate per reconcile, and no large ASN.1
//! crate for two fields. Every length is checked against the bytes there are, so a truncated
//! or garbled file is an error, never a panic.

use base64::Engine as _;
use chrono::NaiveDate;

/// What gitmoor reads of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// `notBefore`, in seconds since the Unix epoch (UTC): with `notAfter`, the certificate's
    /// lifetime, which decides when it is due (a third of it left, as certbot does).
    pub not_before: i64,
    /// `notAfter`, in seconds since the Unix epoch (UTC).
    pub not_after: i64,
    /// The subjectAltName DNS names, as written in the certificate.
    pub names: Vec<String>,
}

const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const END: &str = "-----END CERTIFICATE-----";

/// The first certificate of a PEM file (in certbot's `fullchain.pem`, the site's own; the
/// chain follows it).
pub fn first_cert_der(pem: &str) -> Result<Vec<u8>, String> {
    let start = pem
        .find(BEGIN)
        .ok_or("no `-----BEGIN CERTIFICATE-----` line")?
        + BEGIN.len();
    let len = pem[start..]
        .find(END)
        .ok_or("no `-----END CERTIFICATE-----` line after the first BEGIN")?;
    let b64: String = pem[start..start + len]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("the first certificate is not valid base64: {e}"))
}

/// `notAfter` and the DNS names of a DER certificate.
pub fn cert_info(der: &[u8]) -> Result<CertInfo, String> {
    let (cert, _) = read(der, SEQUENCE, "Certificate")?;
    let (tbs, _) = read(cert, SEQUENCE, "tbsCertificate")?;
    let mut rest = tbs;
    if rest.first() == Some(&0xA0) {
        rest = read(rest, 0xA0, "version")?.1;
    }
    rest = read(rest, 0x02, "serialNumber")?.1;
    rest = read(rest, SEQUENCE, "signature")?.1;
    rest = read(rest, SEQUENCE, "issuer")?.1;
    let (validity, after_validity) = read(rest, SEQUENCE, "validity")?;
    let (tag, not_before, v) = any(validity, "notBefore")?;
    let not_before = time(tag, not_before)?;
    let (tag, not_after, _) = any(v, "notAfter")?;
    let not_after = time(tag, not_after)?;
    rest = read(after_validity, SEQUENCE, "subject")?.1;
    rest = read(rest, SEQUENCE, "subjectPublicKeyInfo")?.1;
    let mut names = Vec::new();
    while !rest.is_empty() {
        let (tag, body, next) = any(rest, "an optional field")?;
        if tag == 0xA3 {
            names = san_names(body)?;
        }
        rest = next;
    }
    Ok(CertInfo {
        not_before,
        not_after,
        names,
    })
}

const SEQUENCE: u8 = 0x30;
/// 2.5.29.17, subjectAltName.
const SAN_OID: &[u8] = &[0x55, 0x1D, 0x11];

/// The dNSName entries of the subjectAltName extension, from `[3] { Extensions }`.
fn san_names(explicit: &[u8]) -> Result<Vec<String>, String> {
    let (mut exts, _) = read(explicit, SEQUENCE, "extensions")?;
    while !exts.is_empty() {
        let (ext, next) = read(exts, SEQUENCE, "extension")?;
        exts = next;
        let (oid, mut rest) = read(ext, 0x06, "extnID")?;
        if oid != SAN_OID {
            continue;
        }
        if rest.first() == Some(&0x01) {
            rest = read(rest, 0x01, "critical")?.1;
        }
        let (value, _) = read(rest, 0x04, "extnValue")?;
        let (mut general, _) = read(value, SEQUENCE, "subjectAltName")?;
        let mut names = Vec::new();
        while !general.is_empty() {
            let (tag, body, next) = any(general, "GeneralName")?;
            // dNSName is `[2] IMPLICIT IA5String`.
            if tag == 0x82 {
                names.push(String::from_utf8_lossy(body).into_owned());
            }
            general = next;
        }
        return Ok(names);
    }
    Ok(Vec::new())
}

/// One TLV that must carry `tag`: (its body, what follows it).
fn read<'a>(input: &'a [u8], tag: u8, what: &str) -> Result<(&'a [u8], &'a [u8]), String> {
    let (got, body, rest) = any(input, what)?;
    if got != tag {
        return Err(format!(
            "not a certificate: {what} has tag {got:#04x}, not {tag:#04x}"
        ));
    }
    Ok((body, rest))
}

/// One TLV: (tag, body, what follows). Single-byte tags and definite lengths only (DER).
fn any<'a>(input: &'a [u8], what: &str) -> Result<(u8, &'a [u8], &'a [u8]), String> {
    let short = || format!("not a certificate: {what} is cut short");
    let (&tag, rest) = input.split_first().ok_or_else(short)?;
    if tag & 0x1F == 0x1F {
        return Err(format!("not a certificate: {what} has a multi-byte tag"));
    }
    let (&first, mut rest) = rest.split_first().ok_or_else(short)?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7F);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(format!("not a certificate: {what} has a bad length"));
        }
        let (bytes, r) = rest.split_at(n);
        rest = r;
        bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    if rest.len() < len {
        return Err(short());
    }
    let (body, rest) = rest.split_at(len);
    Ok((tag, body, rest))
}

/// A UTCTime (`YYMMDDHHMMSSZ`, years 1950–2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) as
/// Unix seconds.
fn time(tag: u8, body: &[u8]) -> Result<i64, String> {
    let text = std::str::from_utf8(body).map_err(|_| "notAfter is not text".to_string())?;
    let digits = text
        .strip_suffix('Z')
        .filter(|d| d.bytes().all(|b| b.is_ascii_digit()));
    let full = match (tag, digits) {
        (0x17, Some(d)) if d.len() == 12 => {
            let yy: u32 = d[..2].parse().map_err(|_| "bad year")?;
            let century = if yy >= 50 { "19" } else { "20" };
            format!("{century}{d}")
        }
        (0x18, Some(d)) if d.len() == 14 => d.to_string(),
        _ => return Err(format!("notAfter {text:?} is not a UTC time")),
    };
    let n = |r: std::ops::Range<usize>| full[r].parse::<u32>().unwrap_or(u32::MAX);
    let year = i32::try_from(n(0..4)).map_err(|_| "bad year")?;
    NaiveDate::from_ymd_opt(year, n(4..6), n(6..8))
        .and_then(|d| d.and_hms_opt(n(8..10), n(10..12), n(12..14)))
        .map(|t| t.and_utc().timestamp())
        .ok_or_else(|| format!("notAfter {text:?} is not a valid time"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed P-256 certificate made once (with python3-cryptography, which can set an
    /// exact end), for DNS:api.example.test, DNS:www.example.test and IP:127.0.0.1;
    /// `openssl x509 -noout -enddate` reads `Jan  2 03:04:05 2030 GMT`.
    const PEM: &str = include_str!("test_cert.pem");

    #[test]
    fn reads_not_after_and_the_dns_names() {
        let der = first_cert_der(PEM).unwrap();
        let info = cert_info(&der).unwrap();
        // 2030-01-02T03:04:05Z
        assert_eq!(info.not_after, 1_893_553_445);
        assert_eq!(info.not_before, 1_735_689_600, "2025-01-01T00:00:00Z");
        assert_eq!(info.names, ["api.example.test", "www.example.test"]);
    }

    #[test]
    fn times_in_both_forms() {
        assert_eq!(time(0x17, b"491231235959Z").unwrap(), 2_524_607_999);
        assert_eq!(time(0x17, b"700101000000Z").unwrap(), 0);
        assert_eq!(time(0x18, b"20300102030405Z").unwrap(), 1_893_553_445);
        assert!(time(0x18, b"20301302030405Z").is_err());
        assert!(time(0x17, b"3001020304Z").is_err());
        assert!(time(0x18, b"20300102030405+0100").is_err());
    }

    #[test]
    fn garbage_and_cut_files_are_errors_not_panics() {
        assert!(first_cert_der("hello").is_err());
        assert!(first_cert_der(&format!("{BEGIN}\n!!!\n{END}\n")).is_err());
        let der = first_cert_der(PEM).unwrap();
        for cut in 0..der.len() {
            assert!(cert_info(&der[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = der.clone();
        flipped[0] = 0x31;
        assert!(cert_info(&flipped).is_err());
        // A length field claiming more than there is.
        assert!(cert_info(&[0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF]).is_err());
    }
}
