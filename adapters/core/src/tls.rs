//! Naming why a TLS handshake with an upstream failed, so that an operator
//! reads "certificate signed by an unknown authority" rather than "error
//! sending request".

use std::error::Error;

use rustls::{CertificateError, Error as TlsError};

/// Why the TLS handshake behind `error` failed, in words an operator can act
/// on; `None` when no TLS failure is among its causes.
pub fn cause(error: &(dyn Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<TlsError>() {
            return Some(describe(tls));
        }
        // `io::Error` hides the error it wraps from `source()` (and TLS
        // streams wrap theirs in two).
        next = match e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn Error + 'static)),
            None => e.source(),
        };
    }
    None
}

fn describe(e: &TlsError) -> String {
    match e {
        TlsError::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => {
                "TLS: the server's certificate is signed by an unknown authority (trust its CA with tls_ca_file)".into()
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "TLS: the server's certificate has expired".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "TLS: the server's certificate is not valid yet (check the clocks)".into()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "TLS: the server's certificate is not valid for the host name in the URL".into()
            }
            CertificateError::Revoked => "TLS: the server's certificate is revoked".into(),
            CertificateError::BadSignature => "TLS: the server's certificate has a bad signature".into(),
            other => format!("TLS: the server's certificate is refused ({other:?})"),
        },
        TlsError::NoCertificatesPresented => "TLS: the server presented no certificate".into(),
        TlsError::AlertReceived(alert) => format!("TLS: the server refused the handshake ({alert:?})"),
        TlsError::InvalidMessage(_) | TlsError::InappropriateMessage { .. } => {
            "TLS: the server does not speak TLS as expected (is the URL's scheme right?)".into()
        }
        other => format!("TLS: the handshake failed ({other})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_found_through_io_errors() {
        let io = std::io::Error::other(TlsError::InvalidCertificate(CertificateError::UnknownIssuer));
        assert!(cause(&io).is_some_and(|c| c.contains("unknown authority")));
        let inner = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            TlsError::InvalidCertificate(CertificateError::Expired),
        );
        let io = std::io::Error::other(inner);
        assert!(cause(&io).is_some_and(|c| c.contains("expired")));
        assert_eq!(cause(&std::io::Error::other("connection refused")), None);
    }
}
