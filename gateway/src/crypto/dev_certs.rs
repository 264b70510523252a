//! A development PKI for mutual TLS between the gateway and a province's
//! adapter service (`lienthong dev-certs`): a CA, the gateway's client
//! certificate and the adapter's server certificate, all signed by that CA.
//! For development and tests: a province's own PKI issues the real ones.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// The files `dev-certs` writes, in order: (name, PEM, whether it is a
/// private key).
#[derive(Clone)]
pub struct DevCerts {
    files: Vec<(&'static str, String, bool)>,
}

impl std::fmt::Debug for DevCerts {
    // The keys stay out of Debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCerts").field("files", &self.names()).finish()
    }
}

/// The CA's certificate: what both sides trust.
pub const CA: &str = "ca.pem";
/// The CA's key: keep it to issue more, or delete it.
pub const CA_KEY: &str = "ca.key";
/// The gateway's client certificate and key (`[adapters.<name>.tls]`).
pub const CLIENT: &str = "gateway-client.pem";
/// The gateway's client key.
pub const CLIENT_KEY: &str = "gateway-client.key";
/// The adapter service's server certificate and key.
pub const SERVER: &str = "adapter-server.pem";
/// The adapter service's server key.
pub const SERVER_KEY: &str = "adapter-server.key";

impl DevCerts {
    /// A new CA and the two certificates it signs, valid from now for
    /// `valid_for`; the server certificate names `localhost`, `127.0.0.1`,
    /// `::1` and `server_names` (the adapter service's host names or
    /// addresses).
    pub fn make(server_names: &[String], valid_for: Duration) -> anyhow::Result<Self> {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).context("the clock is before 1970")?;
        let not_before = time::OffsetDateTime::from_unix_timestamp(now.as_secs() as i64 - 60)?;
        let not_after = time::OffsetDateTime::from_unix_timestamp((now + valid_for).as_secs() as i64)?;
        let dated = |mut p: CertificateParams, name: &str| {
            p.not_before = not_before;
            p.not_after = not_after;
            p.distinguished_name.push(DnType::OrganizationName, "Lienthong development");
            p.distinguished_name.push(DnType::CommonName, name);
            p
        };

        let ca_key = KeyPair::generate()?;
        let mut ca = dated(CertificateParams::new(Vec::<String>::new())?, "Lienthong development CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, &ca_key);

        let client_key = KeyPair::generate()?;
        let mut client = dated(CertificateParams::new(Vec::<String>::new())?, "lienthong-gateway");
        client.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client.signed_by(&client_key, &issuer)?;

        let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
        names.extend(server_names.iter().filter(|n| !names.contains(n)).cloned().collect::<Vec<_>>());
        let server_key = KeyPair::generate()?;
        let first = server_names.first().map(String::as_str).unwrap_or("localhost");
        let mut server =
            dated(CertificateParams::new(names).context("a server name is not a host name or address")?, first);
        server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server.signed_by(&server_key, &issuer)?;

        Ok(Self {
            files: vec![
                (CA, ca_cert.pem(), false),
                (CA_KEY, ca_key.serialize_pem(), true),
                (CLIENT, client_cert.pem(), false),
                (CLIENT_KEY, client_key.serialize_pem(), true),
                (SERVER, server_cert.pem(), false),
                (SERVER_KEY, server_key.serialize_pem(), true),
            ],
        })
    }

    /// The file names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.files.iter().map(|(n, _, _)| *n).collect()
    }

    /// The PEM of file `name`.
    pub fn pem(&self, name: &str) -> Option<&str> {
        self.files.iter().find(|(n, _, _)| *n == name).map(|(_, pem, _)| pem.as_str())
    }

    /// Writes the files into `dir` (made if missing); keys readable by the
    /// owner only. Refuses to replace an existing file unless `force`.
    pub fn write(&self, dir: &Path, force: bool) -> anyhow::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).with_context(|| format!("making {}", dir.display()))?;
        if let Some((name, _, _)) = self.files.iter().find(|(n, _, _)| !force && dir.join(n).exists()) {
            anyhow::bail!("{} exists: give --force to replace it, or another --out", dir.join(name).display());
        }
        let mut written = Vec::new();
        for (name, pem, secret) in &self.files {
            let path = dir.join(name);
            write_file(&path, pem.as_bytes(), *secret).with_context(|| format!("writing {}", path.display()))?;
            written.push(path);
        }
        Ok(written)
    }
}

#[cfg(unix)]
fn write_file(path: &Path, bytes: &[u8], secret: bool) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mode = if secret { 0o600 } else { 0o644 };
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(path)?;
    // `mode` applies only to a file created here: one replaced keeps its
    // own, so set it.
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    file.write_all(bytes)
}

#[cfg(not(unix))]
fn write_file(path: &Path, bytes: &[u8], _secret: bool) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_certificates_chain_to_the_ca_and_the_keys_stay_out_of_debug() {
        let certs = DevCerts::make(&["adapter.hanoi.example".into()], Duration::from_secs(86_400)).unwrap();
        assert_eq!(certs.names(), [CA, CA_KEY, CLIENT, CLIENT_KEY, SERVER, SERVER_KEY]);
        for name in [CA, CLIENT, SERVER] {
            assert!(certs.pem(name).unwrap().starts_with("-----BEGIN CERTIFICATE-----"), "{name}");
        }
        for name in [CA_KEY, CLIENT_KEY, SERVER_KEY] {
            assert!(certs.pem(name).unwrap().contains("PRIVATE KEY"), "{name}");
        }
        assert!(!format!("{certs:?}").contains("PRIVATE"));
        // A second run is another CA: nothing is reused.
        let again = DevCerts::make(&[], Duration::from_secs(86_400)).unwrap();
        assert_ne!(certs.pem(CA), again.pem(CA));
    }

    #[test]
    fn existing_files_are_kept_unless_forced() {
        let dir = std::env::temp_dir().join(format!("lienthong-dev-certs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let certs = DevCerts::make(&[], Duration::from_secs(3_600)).unwrap();
        assert_eq!(certs.write(&dir, false).unwrap().len(), 6);
        let e = certs.write(&dir, false).unwrap_err().to_string();
        assert!(e.contains("exists: give --force"), "{e}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // A key someone made readable to all, replaced: owner-only again.
            std::fs::set_permissions(dir.join(CA_KEY), std::fs::Permissions::from_mode(0o644)).unwrap();
            assert_eq!(certs.write(&dir, true).unwrap().len(), 6);
            for key in [CA_KEY, CLIENT_KEY, SERVER_KEY] {
                let mode = std::fs::metadata(dir.join(key)).unwrap().permissions().mode();
                assert_eq!(mode & 0o077, 0, "{key} is for its owner only");
            }
        }
        assert_eq!(certs.write(&dir, true).unwrap().len(), 6);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
