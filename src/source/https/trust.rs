//! The TLS client set-up for https remotes: the system's CAs, plus the remote's `ca_file`. Made at
//! the first https request and kept for the process (parsing the system bundle costs ~30 ms of
//! CPU); made again only when the `ca_file`'s content changes.

use native_tls::{Certificate, TlsConnector};
use std::sync::Mutex;

/// The connector, with the `ca_file` content it was made with.
static CACHED: Mutex<Option<(Option<Vec<u8>>, TlsConnector)>> = Mutex::new(None);

/// A connector trusting the system's CAs and `extra_ca_pem` (a PEM file's content, already
/// checked to hold a certificate).
pub(super) fn connector(extra_ca_pem: Option<&[u8]>) -> Result<TlsConnector, String> {
    let mut cached = CACHED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((pem, connector)) = cached.as_ref() {
        if pem.as_deref() == extra_ca_pem {
            return Ok(connector.clone());
        }
    }
    let mut builder = TlsConnector::builder();
    // OpenSSL's default security level refuses older versions too; said here, not assumed.
    builder.min_protocol_version(Some(native_tls::Protocol::Tlsv12));
    if let Some(pem) = extra_ca_pem {
        for cert in pem_certificates(pem)? {
            builder.add_root_certificate(cert);
        }
    }
    let connector = builder
        .build()
        .map_err(|e| format!("cannot set up TLS: {e}"))?;
    *cached = Some((extra_ca_pem.map(<[u8]>::to_vec), connector.clone()));
    Ok(connector)
}

/// Every certificate of a PEM bundle (a `ca_file` may hold a chain).
pub(super) fn pem_certificates(pem: &[u8]) -> Result<Vec<Certificate>, String> {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let mut certs = Vec::new();
    let mut rest = pem;
    while let Some(start) = find(rest, BEGIN) {
        let after = &rest[start..];
        let end = find(after, END)
            .ok_or_else(|| "a certificate without its END line".to_string())?
            + END.len();
        let cert = Certificate::from_pem(&after[..end]).map_err(|e| e.to_string())?;
        certs.push(cert);
        rest = &after[end..];
    }
    if certs.is_empty() {
        return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) in it".to_string());
    }
    Ok(certs)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_a_certificate_is_refused_with_the_reason() {
        let err = pem_certificates(b"not a pem").err().unwrap_or_default();
        assert!(err.contains("no PEM certificate"), "{err}");
        let err = pem_certificates(b"-----BEGIN CERTIFICATE-----\nAAAA\n")
            .err()
            .unwrap_or_default();
        assert!(err.contains("END"), "{err}");
    }
}
