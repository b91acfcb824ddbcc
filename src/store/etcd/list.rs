//! Reading everything under the prefix: in pages (80,000 health keys are more than one
//! answer may carry), each key checked, a key too large to read isolated rather than
//! failing the whole load.

use std::time::{Duration, Instant};

use tracing::warn;

use super::keys::{self, Invalid};
use crate::etcd::proto::mvccpb::KeyValue;
use crate::etcd::{Client, EtcdError, prefix_end};
use crate::events::{self, Kind, NewEvent};
use crate::store::{Change, Listing};

/// Keys per page.
pub(super) const PAGE_KEYS: i64 = 2000;

/// Everything under `prefix`, checked, and the revision it was read at.
pub(super) async fn load(client: &Client, prefix: &str) -> Result<(Listing, i64), EtcdError> {
    let end = prefix_end(prefix.as_bytes());
    let mut from = prefix.as_bytes().to_vec();
    let mut revision = 0;
    let mut limit = PAGE_KEYS;
    let mut listing = Listing::default();
    let mut skipped = 0usize;
    loop {
        let page = client.range_page(&from, &end, revision, limit, false).await;
        let (kvs, more, read_at) = match page {
            Ok(p) => p,
            // A page over the answer size: smaller pages, down to the one key too large,
            // which is skipped.
            Err(EtcdError::TooLarge(_)) if limit > 1 => {
                limit = (limit / 2).max(1);
                continue;
            }
            Err(EtcdError::TooLarge(why)) => {
                let (kvs, _, read_at) = client.range_page(&from, &end, revision, 1, true).await?;
                let Some(kv) = kvs.first() else {
                    return Err(EtcdError::TooLarge(why));
                };
                revision = read_at;
                report(client, &kv.key, &Invalid::TooLarge(usize::MAX));
                skipped += 1;
                from = next_key(&kv.key);
                limit = PAGE_KEYS;
                continue;
            }
            Err(e) => return Err(e),
        };
        revision = read_at;
        for kv in &kvs {
            match check(client, prefix, kv, false) {
                Some(c) => {
                    listing.apply(&c);
                }
                None => skipped += 1,
            }
        }
        match kvs.last() {
            Some(last) if more => from = next_key(&last.key),
            _ => break,
        }
        limit = PAGE_KEYS;
    }
    if skipped > 0 {
        events::record(NewEvent::new(
            Kind::Registration,
            format!(
                "{skipped} keys under etcd prefix {prefix} were skipped: not valid as flotilla writes them (flotilla_store_skipped_keys_total)"
            ),
        ));
    }
    Ok((listing, revision))
}

/// The key right after `key`.
fn next_key(key: &[u8]) -> Vec<u8> {
    let mut next = key.to_vec();
    next.push(0);
    next
}

/// What `kv` says, if it passes the checks; counted and logged otherwise.
pub(super) fn checked(
    client: &Client,
    prefix: &str,
    kv: &KeyValue,
    deleted: bool,
) -> Option<Change> {
    check(client, prefix, kv, deleted)
}

fn check(client: &Client, prefix: &str, kv: &KeyValue, deleted: bool) -> Option<Change> {
    match keys::decode(prefix, kv, deleted) {
        Ok(c) => Some(c),
        Err(why) => {
            report(client, &kv.key, &why);
            None
        }
    }
}

/// Counts a skipped key; logs at most one line a second (a flood of bad keys must not flood
/// the log too).
fn report(client: &Client, key: &[u8], why: &Invalid) {
    client.metrics().skipped(why.reason());
    static LAST: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
        *last = Some(Instant::now());
        let shown: String = String::from_utf8_lossy(&key[..key.len().min(200)]).into_owned();
        warn!(key = %crate::config::escape_controls(&shown), reason = %why,
            "skipping a key under flotilla's etcd prefix that flotilla would not write");
    }
}
