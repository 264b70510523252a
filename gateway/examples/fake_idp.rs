//! A fake VNeID for the identity benchmark: the contract suite's fake OpenID
//! provider (real HTTP: discovery, JWKS), with `--citizens` RS256 access
//! tokens of distinct citizens written to `--tokens`, one per line. Prints
//! `issuer <url>`, then answers lines on stdin: `hits <path>` prints how many
//! requests reached that path.
//!
//!     cargo run --release -p lienthong --example fake_idp -- --tokens /tmp/tokens.txt --citizens 1000

#[path = "common/help.rs"]
mod help;

use std::io::Write;

use lienthong_contract_tests::fakes::FakeOidc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if help::asked(include_str!("fake_idp.rs")) {
        return Ok(());
    }
    let citizens: u32 = help::arg("--citizens", "1000").parse()?;
    let idp = FakeOidc::start().await?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(help::arg("--tokens", "tokens.txt"))?);
    for i in 0..citizens {
        // Valid 10 minutes: longer than any run.
        writeln!(out, "{}", idp.sign("rsa-1", &idp.claims(&format!("079190{i:06}"))))?;
    }
    out.flush()?;
    println!("issuer {}", idp.issuer());
    idp.faults.answer_hits_on_stdin().await?;
    Ok(())
}
