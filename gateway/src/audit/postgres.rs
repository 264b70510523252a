//! The audit log in PostgreSQL, for several replicas writing one chain.
//!
//! Two tables in the configured schema: `audit_log (seq, line)` holding the
//! very JSON lines the file sink writes, and `audit_head`, one row with the
//! chain's last number and hash. Each batch is one transaction that locks
//! the head row, so replicas append in turn and the chain stays one; the
//! commit (PostgreSQL's own durable write) comes before any answer leaves.

use tokio_postgres::{Client, NoTls};

use super::record::GENESIS;
use crate::config::valid_schema;

/// Connects, and creates the schema and tables if missing.
pub async fn connect(url: &str, schema: &str) -> anyhow::Result<Client> {
    anyhow::ensure!(valid_schema(schema), "audit.postgres_schema must be a lower-case identifier");
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|e| anyhow::anyhow!("connecting to the audit database failed: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::error!(error = %e, "the audit database connection ended");
        }
    });
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {schema}.audit_log (seq BIGINT PRIMARY KEY, line TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS {schema}.audit_head (
                 one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one), seq BIGINT NOT NULL, hash TEXT NOT NULL);
             INSERT INTO {schema}.audit_head (seq, hash) VALUES (0, '{GENESIS}') ON CONFLICT DO NOTHING;
             ALTER TABLE {schema}.audit_head ADD COLUMN IF NOT EXISTS key_id TEXT;"
        ))
        .await
        .map_err(|e| anyhow::anyhow!("preparing the audit tables failed: {e}"))?;
    Ok(client)
}

/// Appends `events` after the current head, in one transaction.
pub async fn append(
    client: &mut Client,
    schema: &str,
    events: &[super::AuditEvent],
    key: Option<&crate::crypto::SecretKey>,
) -> Result<(), String> {
    let tx = client.transaction().await.map_err(|e| e.to_string())?;
    let head = tx
        .query_one(&format!("SELECT seq, hash, key_id FROM {schema}.audit_head FOR UPDATE"), &[])
        .await
        .map_err(|e| e.to_string())?;
    let (seq, hash, chain_key): (i64, String, Option<String>) = (head.get(0), head.get(1), head.get(2));
    // Every replica must chain under the same key (or none): the chain's
    // first writer names it, and a replica configured otherwise fails closed.
    let ours = key_id(key);
    match chain_key {
        Some(theirs) if theirs != ours => {
            return Err(format!(
                "the audit chain in schema {schema} is written under another audit.chain_key (or none): \
                 every replica needs the same"
            ));
        }
        Some(_) => {}
        None => {
            tx.execute(&format!("UPDATE {schema}.audit_head SET key_id = $1"), &[&ours])
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    let (lines, last_seq, last_hash) = super::chain_lines(events, seq as u64, hash, key);
    let seqs: Vec<i64> = (seq + 1..=last_seq as i64).collect();
    tx.execute(
        &format!("INSERT INTO {schema}.audit_log (seq, line) SELECT * FROM unnest($1::BIGINT[], $2::TEXT[])"),
        &[&seqs, &lines],
    )
    .await
    .map_err(|e| e.to_string())?;
    tx.execute(&format!("UPDATE {schema}.audit_head SET seq = $1, hash = $2"), &[&(last_seq as i64), &last_hash])
        .await
        .map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())
}

/// A name for the chain key that does not reveal it: "unkeyed", or the
/// first 16 hex digits of an HMAC of a fixed label under the key.
fn key_id(key: Option<&crate::crypto::SecretKey>) -> String {
    match key {
        None => "unkeyed".to_owned(),
        Some(key) => {
            crate::crypto::hex(&crate::crypto::hmac_sha256(key, b"lienthong audit chain key id"))[..16].to_owned()
        }
    }
}

/// Checks that the chain's last record was written under `key` (see
/// `check_chain_key` in the audit module).
pub async fn check_head(client: &Client, schema: &str, key: Option<&crate::crypto::SecretKey>) -> anyhow::Result<()> {
    let row = client.query_opt(&format!("SELECT line FROM {schema}.audit_log ORDER BY seq DESC LIMIT 1"), &[]).await?;
    let Some(row) = row else { return Ok(()) };
    let (last, hash) = super::AuditRecord::parse(row.get::<_, &str>(0))
        .map_err(|e| anyhow::anyhow!("the audit chain in schema {schema} ends in an unreadable record: {e}"))?;
    super::check_chain_key(&last, &hash, key).map_err(|e| anyhow::anyhow!("the audit chain in schema {schema} {e}"))
}

/// Every line of the chain, in order, newline-terminated (for `verify`).
pub async fn read_all(url: &str, schema: &str) -> anyhow::Result<Vec<u8>> {
    let client = connect(url, schema).await?;
    let rows = client.query(&format!("SELECT line FROM {schema}.audit_log ORDER BY seq"), &[]).await?;
    let mut out = Vec::new();
    for row in rows {
        out.extend_from_slice(row.get::<_, &str>(0).as_bytes());
        out.push(b'\n');
    }
    Ok(out)
}
