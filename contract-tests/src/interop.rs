//! A real OpenID Certified provider (panva's `oidc-provider`, run by Node
//! from `interop/oidc-provider`) and a citizen who signs in to it the way a
//! browser does: authorization code with PKCE, the provider's own login and
//! consent pages, cookies and redirects, then the token endpoint.
//!
//! `tools/test` installs the provider (`npm ci --prefix
//! contract-tests/interop/oidc-provider`); without it, starting fails with
//! the command to run.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The app's client at the provider.
pub const APP_CLIENT: (&str, &str) = ("citizen-app", "app-secret");
/// The gateway's client at the provider (introspection).
pub const GATEWAY_CLIENT: (&str, &str) = ("lienthong-gateway", "gateway-secret");
const REDIRECT_URI: &str = "http://127.0.0.1:9/callback";

/// A running provider; stopped when dropped.
#[derive(Debug)]
pub struct OidcProvider {
    /// `http://127.0.0.1:<port>`.
    pub issuer: String,
    child: Option<Child>,
    http: reqwest::Client,
}

/// What a login yields.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// The access token (a JWT or opaque, per the resource).
    pub access_token: String,
    /// The refresh token, when `offline_access` was granted.
    pub refresh_token: Option<String>,
}

fn dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/interop/oidc-provider"))
}

/// `name=value` pairs of a response's `Set-Cookie` headers.
fn cookies(resp: &reqwest::Response, jar: &mut HashMap<String, String>) {
    for value in resp.headers().get_all(reqwest::header::SET_COOKIE) {
        let Some(pair) = value.to_str().ok().and_then(|v| v.split(';').next()) else { continue };
        if let Some((name, value)) = pair.split_once('=') {
            if value.is_empty() {
                jar.remove(name.trim());
            } else {
                jar.insert(name.trim().to_owned(), value.to_owned());
            }
        }
    }
}

fn cookie_header(jar: &HashMap<String, String>) -> String {
    jar.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
}

fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

impl OidcProvider {
    /// Starts the provider on a free port and waits (with a deadline) until
    /// it listens.
    pub async fn start() -> anyhow::Result<Self> {
        if !dir().join("node_modules/oidc-provider").exists() {
            bail!(
                "panva's oidc-provider is not installed: run `npm ci --prefix contract-tests/interop/oidc-provider` (tools/test does)"
            );
        }
        let mut child = Command::new("node")
            .arg("provider.mjs")
            .current_dir(dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting node (is Node.js installed?)")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .context("the provider did not start within 30 s")??
            .context("the provider exited before listening")?;
        let issuer = serde_json::from_str::<Value>(&line)?["issuer"]
            .as_str()
            .context("the provider's first line names no issuer")?
            .to_owned();
        // Keep reading what the provider prints (its notices), or it dies
        // writing to a closed pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
        Ok(Self { issuer, child: Some(child), http })
    }

    /// Stops the provider (it goes away: connections refused).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Signs `account` in for an access token to `resource`, as a browser
    /// and the app's backend would.
    pub async fn login(&self, account: &str, resource: &str, offline: bool) -> anyhow::Result<Tokens> {
        let verifier = b64url(&rand_bytes(32));
        let challenge = b64url(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref());
        let state = b64url(&rand_bytes(12));
        let scope = if offline { "openid citizen offline_access" } else { "openid citizen" };
        let mut query = vec![
            ("client_id", APP_CLIENT.0),
            ("response_type", "code"),
            ("scope", scope),
            ("redirect_uri", REDIRECT_URI),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("state", state.as_str()),
            ("resource", resource),
        ];
        if offline {
            query.push(("prompt", "consent"));
        }
        let mut jar = HashMap::new();
        let mut resp = self.http.get(format!("{}/auth", self.issuer)).query(&query).send().await?;
        // Follow redirects, answering the login and consent pages, until the
        // provider sends the browser back to the app with a code.
        for _ in 0..12 {
            cookies(&resp, &mut jar);
            let status = resp.status();
            let location =
                resp.headers().get(reqwest::header::LOCATION).and_then(|l| l.to_str().ok()).map(str::to_owned);
            if status.is_redirection() {
                let location = location.context("a redirect without Location")?;
                if location.starts_with(REDIRECT_URI) {
                    let url = reqwest::Url::parse(&location)?;
                    let params: HashMap<_, _> = url.query_pairs().into_owned().collect();
                    if let Some(error) = params.get("error") {
                        bail!("the provider refused the login: {error} {:?}", params.get("error_description"));
                    }
                    anyhow::ensure!(params.get("state") == Some(&state), "state does not match");
                    let code = params.get("code").context("no code")?;
                    return self.exchange(code, &verifier, resource).await;
                }
                let url = if location.starts_with('/') { format!("{}{location}", self.issuer) } else { location };
                resp = self.http.get(url).header("cookie", cookie_header(&jar)).send().await?;
                continue;
            }
            let page = resp.text().await?;
            anyhow::ensure!(status.is_success(), "the provider answered {status}: {page}");
            let action = page
                .split("action=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .context("an interaction page without a form")?
                .to_owned();
            let form: Vec<(&str, &str)> = if page.contains("name=\"login\"") {
                vec![("prompt", "login"), ("login", account), ("password", "any")]
            } else {
                vec![("prompt", "consent")]
            };
            let url = if action.starts_with('/') { format!("{}{action}", self.issuer) } else { action };
            resp = self.http.post(url).header("cookie", cookie_header(&jar)).form(&form).send().await?;
        }
        bail!("the login did not finish within 12 steps")
    }

    async fn exchange(&self, code: &str, verifier: &str, resource: &str) -> anyhow::Result<Tokens> {
        let resp = self
            .http
            .post(format!("{}/token", self.issuer))
            .basic_auth(APP_CLIENT.0, Some(APP_CLIENT.1))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT_URI),
                ("code_verifier", verifier),
                ("resource", resource),
            ])
            .send()
            .await?;
        let status = resp.status();
        let body: Value = resp.json().await?;
        anyhow::ensure!(status.is_success(), "the token endpoint answered {status}: {body}");
        Ok(Tokens {
            access_token: body["access_token"].as_str().context("no access_token")?.to_owned(),
            refresh_token: body["refresh_token"].as_str().map(str::to_owned),
        })
    }

    /// Revokes `token` at the provider's revocation endpoint (RFC 7009), as
    /// the app does when the citizen signs out.
    pub async fn revoke(&self, token: &str) -> anyhow::Result<()> {
        let resp = self
            .http
            .post(format!("{}/token/revocation", self.issuer))
            .basic_auth(APP_CLIENT.0, Some(APP_CLIENT.1))
            .form(&[("token", token)])
            .send()
            .await?;
        anyhow::ensure!(resp.status().is_success(), "revocation answered {}", resp.status());
        Ok(())
    }

    /// Publishes exactly these keys (`rsa-a`, `rsa-b`, `ec-a`), in order:
    /// the first of each algorithm signs.
    pub async fn publish(&self, kids: &[&str]) -> anyhow::Result<()> {
        let resp = self
            .http
            .post(format!("{}/__test/keys", self.issuer))
            .json(&serde_json::json!({ "publish": kids }))
            .send()
            .await?;
        anyhow::ensure!(resp.status().is_success(), "publishing keys answered {}", resp.status());
        Ok(())
    }

    /// Requests the provider served at `path` (for example `/token/introspection`).
    pub async fn hits(&self, path: &str) -> anyhow::Result<u64> {
        let hits: Value = self.http.get(format!("{}/__test/hits", self.issuer)).send().await?.json().await?;
        Ok(hits[path].as_u64().unwrap_or(0))
    }
}

fn rand_bytes(n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    let _ = aws_lc_rs::rand::fill(&mut out);
    out
}
