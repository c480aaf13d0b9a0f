//! Tokens for job event stream URLs. A browser's `EventSource` cannot send an `Authorization`
//! header, so `GET /v1/jobs/{id}/events` is authorised by a token in its URL instead: the job id
//! and an expiry, signed with HMAC-SHA256 under a key the replicas share (made once, kept in the
//! `service_secrets` table). The token names one job and stops working after [`TTL`]; a client
//! whose stream outlives it gets a fresh URL from `GET /v1/jobs/{id}`.

use std::time::Duration;

use hmac::{Hmac, Mac as _};
use rand::RngCore as _;
use sha2::Sha256;

use crate::db::Db;

/// How long an events URL works (long enough for a page to follow a typical job; reconnecting
/// later needs a fresh URL).
pub const TTL: Duration = Duration::from_hours(1);

fn mac(key: &[u8; 32], job_id: &str, expires_ms: i64) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    m.update(format!("{job_id}.{expires_ms}").as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// `{expires_ms}.{hex mac}` for `job_id`, valid for [`TTL`] from `now_ms`.
#[must_use]
pub fn sign(key: &[u8; 32], job_id: &str, now_ms: i64) -> String {
    let expires = now_ms.saturating_add(i64::try_from(TTL.as_millis()).unwrap_or(i64::MAX));
    format!("{expires}.{}", mac(key, job_id, expires))
}

/// Whether `token` was signed for `job_id` and has not expired at `now_ms`.
#[must_use]
pub fn verify(key: &[u8; 32], job_id: &str, token: &str, now_ms: i64) -> bool {
    let Some((exp, sig)) = token.split_once('.') else { return false };
    let Ok(expires) = exp.parse::<i64>() else { return false };
    let Ok(sig) = hex::decode(sig) else { return false };
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    m.update(format!("{job_id}.{expires}").as_bytes());
    expires >= now_ms && m.verify_slice(&sig).is_ok()
}

/// The events URL (path and query) of `job_id`.
#[must_use]
pub fn events_url(key: &[u8; 32], job_id: &str, now_ms: i64) -> String {
    format!("/v1/jobs/{job_id}/events?token={}", sign(key, job_id, now_ms))
}

/// The shared key: made by the first replica that starts, read by the others.
pub async fn load_key(db: &Db) -> Result<[u8; 32], sqlx::Error> {
    let mut fresh = [0u8; 32];
    rand::rng().fill_bytes(&mut fresh);
    sqlx::query("INSERT INTO service_secrets (name, value) VALUES ('stream_key', $1) ON CONFLICT (name) DO NOTHING")
        .bind(hex::encode(fresh))
        .execute(db.pool())
        .await?;
    let stored: String =
        sqlx::query_scalar("SELECT value FROM service_secrets WHERE name = 'stream_key'").fetch_one(db.pool()).await?;
    let mut key = [0u8; 32];
    hex::decode_to_slice(stored.trim(), &mut key).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_one_job_and_expire() {
        let key = [7u8; 32];
        let t = sign(&key, "job_a", 1_000);
        assert!(verify(&key, "job_a", &t, 1_000));
        assert!(!verify(&key, "job_b", &t, 1_000), "another job");
        assert!(!verify(&[8u8; 32], "job_a", &t, 1_000), "another key");
        assert!(!verify(&key, "job_a", &t, 1_000 + 3_600_001), "expired");
        let (exp, sig) = t.split_once('.').unwrap();
        let later = format!("{}.{sig}", exp.parse::<i64>().unwrap() + 1);
        assert!(!verify(&key, "job_a", &later, 1_000), "an expiry moved by hand breaks the signature");
        for bad in ["", "x", "1.zz", ".", "1."] {
            assert!(!verify(&key, "job_a", bad, 0), "{bad:?}");
        }
    }
}
