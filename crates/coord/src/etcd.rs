//! The coordination store on etcd v3, through its JSON gRPC gateway (`/v3/kv/range`,
//! `/v3/kv/txn`, `/v3/lease/*`; keys and values base64) with the client in `gateway` (HTTP or
//! HTTPS with a client certificate, an etcd user): no gRPC stack, no async runtime of ours.
//!
//! Layout, under a prefix (default `/resurgo`):
//! - `<prefix>/<group>/assignment`: the [`Assignment`] as JSON. A compare-and-swap reads the key,
//!   checks the epoch inside the value against the expected one, then writes in a txn that
//!   compares the key's `mod_revision` with the one read (or `create_revision = 0` when none was
//!   expected). Only this crate writes the key, and only through that txn, so its `mod_revision`
//!   pins the exact value — and the epoch in it — that was checked; one key keeps the epoch and
//!   the primary together, where a separate epoch key would need a two-key txn for nothing.
//!   A txn retried on another member after the first gave no answer may fail because of its
//!   own first attempt: when the value it finds is exactly the one being written, the swap is
//!   ours (`cas_outcome`).
//! - `<prefix>/leases/<name>`: the holder's name, attached to an etcd lease so that etcd deletes
//!   it on expiry. Granting puts it only if absent (`create_revision = 0`); a key found attached
//!   to the lease just granted was put by this very grant, retried.
//!
//! etcd lease ttls are whole seconds (rounded up here) and etcd raises very short ones to its
//! minimum (about 2 s with default election settings).

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::gateway::{Answer, EtcdSecurity, Gateway};
use crate::model::{check_successor, Assignment};
use crate::store::{CasOutcome, CoordStore, LeaseId, Result, StoreError};

/// A coordination store on an etcd v3 cluster.
#[derive(Clone, Debug)]
pub struct EtcdStore {
    gateway: Gateway,
    prefix: String,
    timeout: Duration,
}

/// A key-value pair as read from etcd.
struct Kv {
    mod_revision: i64,
    lease: u64,
    value: Vec<u8>,
}

impl EtcdStore {
    /// A store on the members at `endpoints` (`http://host:port` or `host:port`), with keys under
    /// `/resurgo` and a 5 s timeout per request.
    pub fn new<S: AsRef<str>>(endpoints: &[S]) -> Result<Self> {
        Self::open(endpoints, &EtcdSecurity::default())
    }

    /// A store on the members at `endpoints`, all `http://` or all `https://`, reached with
    /// `security` (TLS files, an etcd user); certificate files are read now.
    pub fn open<S: AsRef<str>>(endpoints: &[S], security: &EtcdSecurity) -> Result<Self> {
        Ok(EtcdStore {
            gateway: Gateway::new(endpoints, security)?,
            prefix: "/resurgo".to_owned(),
            timeout: Duration::from_secs(5),
        })
    }

    /// Keys under `prefix` instead of `/resurgo` (several systems, or tests, on one cluster).
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.trim_end_matches('/').to_owned();
        self
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn assignment_key(&self, group: &str) -> Result<String> {
        check_name("group", group)?;
        Ok(format!("{}/{group}/assignment", self.prefix))
    }

    fn lease_key(&self, name: &str) -> Result<String> {
        check_name("lease", name)?;
        Ok(format!("{}/leases/{name}", self.prefix))
    }

    /// One gateway call; the first member that answers decides.
    fn call(&self, path: &str, request: &Value) -> Result<Value> {
        Ok(self.call_answer(path, request)?.value)
    }

    /// A gateway call, saying whether an earlier attempt may have been applied.
    fn call_answer(&self, path: &str, request: &Value) -> Result<Answer> {
        self.gateway.call(path, request, self.timeout)
    }

    fn range(&self, key: &str) -> Result<Option<Kv>> {
        let response = self.call("/v3/kv/range", &json!({ "key": B64.encode(key) }))?;
        first_kv(&response, key)
    }

    fn read_assignment(&self, group: &str) -> Result<Option<(Assignment, i64)>> {
        let key = self.assignment_key(group)?;
        match self.range(&key)? {
            None => Ok(None),
            Some(kv) => Ok(Some((parse_assignment(&key, &kv.value)?, kv.mod_revision))),
        }
    }
}

fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.contains('/') {
        return Err(StoreError::Refused(format!(
            "{what} name `{name}` must be non-empty and without `/`"
        )));
    }
    Ok(())
}

fn corrupt(key: &str, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        location: key.to_owned(),
        reason: reason.into(),
    }
}

/// An int64 field of the gateway's JSON: a string (as jsonpb writes int64), absent when zero.
fn int_field(value: &Value, name: &str) -> Option<i64> {
    match value.get(name)? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

fn first_kv(range_response: &Value, key: &str) -> Result<Option<Kv>> {
    let Some(kv) = range_response
        .get("kvs")
        .and_then(Value::as_array)
        .and_then(|kvs| kvs.first())
    else {
        return Ok(None);
    };
    let value = match kv.get("value").and_then(Value::as_str) {
        Some(text) => B64
            .decode(text)
            .map_err(|e| corrupt(key, format!("value is not base64: {e}")))?,
        None => Vec::new(),
    };
    Ok(Some(Kv {
        mod_revision: int_field(kv, "mod_revision").ok_or_else(|| corrupt(key, "no mod_revision"))?,
        lease: int_field(kv, "lease").unwrap_or(0) as u64,
        value,
    }))
}

/// What a compare-and-swap writing `new` did, from its txn: whether it `succeeded`, the
/// assignment `stored` when it did not, and whether the txn was `ambiguous` (an attempt at a
/// member that gave no answer may have been applied before the retry that answered).
///
/// Ambiguous and stored exactly as `new` (group, site, epoch and time to the millisecond): the
/// first attempt was applied, and the retry failed on its own write. Calling that a conflict
/// would tell the winner it lost. Without ambiguity, an equal value was written by someone else.
pub(crate) fn cas_outcome(
    succeeded: bool,
    ambiguous: bool,
    stored: Option<Assignment>,
    new: &Assignment,
) -> CasOutcome {
    match stored {
        _ if succeeded => CasOutcome::Swapped,
        Some(stored) if ambiguous && stored == *new => CasOutcome::Swapped,
        stored => CasOutcome::Conflict(stored),
    }
}

fn parse_assignment(key: &str, bytes: &[u8]) -> Result<Assignment> {
    serde_json::from_slice(bytes).map_err(|e| corrupt(key, format!("not an assignment: {e}")))
}

impl CoordStore for EtcdStore {
    fn get_assignment(&self, group: &str) -> Result<Option<Assignment>> {
        Ok(self.read_assignment(group)?.map(|(a, _)| a))
    }

    fn compare_and_swap_assignment(
        &self,
        group: &str,
        expected_epoch: Option<u64>,
        new: &Assignment,
    ) -> Result<CasOutcome> {
        check_successor(group, expected_epoch, new)?;
        let key = self.assignment_key(group)?;
        let current = self.read_assignment(group)?;
        let compare = match (&current, expected_epoch) {
            (None, None) => {
                json!({ "key": B64.encode(&key), "target": "CREATE", "result": "EQUAL", "create_revision": "0" })
            }
            (Some((a, revision)), Some(epoch)) if a.epoch == epoch => {
                json!({ "key": B64.encode(&key), "target": "MOD", "result": "EQUAL", "mod_revision": revision.to_string() })
            }
            _ => return Ok(CasOutcome::Conflict(current.map(|(a, _)| a))),
        };
        let value = serde_json::to_vec(new).expect("assignments serialize");
        let txn = json!({
            "compare": [compare],
            "success": [{ "request_put": { "key": B64.encode(&key), "value": B64.encode(value) } }],
            "failure": [{ "request_range": { "key": B64.encode(&key) } }],
        });
        let Answer {
            value: response,
            ambiguous,
        } = self.call_answer("/v3/kv/txn", &txn)?;
        if response.get("succeeded").and_then(Value::as_bool).unwrap_or(false) {
            return Ok(CasOutcome::Swapped);
        }
        // The failure branch read the key in the same txn: the value that made it fail.
        let range = response
            .pointer("/responses/0/response_range")
            .ok_or_else(|| corrupt(&key, "failed txn without its range"))?;
        let stored = first_kv(range, &key)?
            .map(|kv| parse_assignment(&key, &kv.value))
            .transpose()?;
        Ok(cas_outcome(false, ambiguous, stored, new))
    }

    fn grant_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<LeaseId> {
        let key = self.lease_key(name)?;
        if ttl.is_zero() {
            return Err(StoreError::Refused(format!("lease `{name}` with a zero ttl")));
        }
        let seconds = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let granted = self.call("/v3/lease/grant", &json!({ "TTL": seconds.to_string() }))?;
        let id = int_field(&granted, "ID").ok_or_else(|| corrupt("/v3/lease/grant", "no lease ID"))?;
        let txn = json!({
            "compare": [{ "key": B64.encode(&key), "target": "CREATE", "result": "EQUAL", "create_revision": "0" }],
            "success": [{ "request_put": { "key": B64.encode(&key), "value": B64.encode(holder), "lease": id.to_string() } }],
            "failure": [{ "request_range": { "key": B64.encode(&key) } }],
        });
        let outcome = self.call("/v3/kv/txn", &txn);
        let response = match outcome {
            Ok(r) if r.get("succeeded").and_then(Value::as_bool).unwrap_or(false) => return Ok(LeaseId(id as u64)),
            Ok(r) => r,
            Err(e) => {
                let _ = self.revoke(LeaseId(id as u64));
                return Err(e);
            }
        };
        let held = response
            .pointer("/responses/0/response_range")
            .map(|range| first_kv(range, &key))
            .transpose()?
            .flatten();
        // Attached to the lease granted just now: our put, applied by an attempt that gave no
        // answer before the retry found the key (lease ids are never reused).
        if held.as_ref().is_some_and(|kv| kv.lease == id as u64) {
            return Ok(LeaseId(id as u64));
        }
        self.revoke(LeaseId(id as u64))?;
        let held_by = held
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
            .unwrap_or_default();
        Err(StoreError::LeaseHeld {
            name: name.to_owned(),
            holder: held_by,
        })
    }

    fn keep_alive(&self, lease: LeaseId) -> Result<bool> {
        // A streaming RPC; through the gateway one request body gives one answer, then the
        // stream ends with the request.
        let response = self.call("/v3/lease/keepalive", &json!({ "ID": lease.0.to_string() }))?;
        let result = response.get("result").unwrap_or(&response);
        Ok(int_field(result, "TTL").unwrap_or(0) > 0)
    }

    fn lease_holder(&self, name: &str) -> Result<Option<(String, Duration)>> {
        let key = self.lease_key(name)?;
        let Some(kv) = self.range(&key)? else { return Ok(None) };
        let holder = String::from_utf8(kv.value).map_err(|_| corrupt(&key, "holder is not UTF-8"))?;
        let alive = self.call("/v3/lease/timetolive", &json!({ "ID": kv.lease.to_string() }))?;
        // -1: expired between the two reads (etcd is deleting the key). Otherwise whole seconds
        // left, rounded down: 0 is a lease still valid for less than a second.
        match int_field(&alive, "TTL").unwrap_or(0) {
            ttl if ttl < 0 => Ok(None),
            ttl => Ok(Some((holder, Duration::from_secs(ttl as u64)))),
        }
    }

    fn lease_of(&self, name: &str) -> Result<Option<LeaseId>> {
        let key = self.lease_key(name)?;
        Ok(self.range(&key)?.map(|kv| LeaseId(kv.lease)))
    }

    fn revoke(&self, lease: LeaseId) -> Result<()> {
        match self.call("/v3/lease/revoke", &json!({ "ID": lease.0.to_string() })) {
            Err(StoreError::Refused(message)) if message.contains("lease not found") => Ok(()),
            other => other.map(drop),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    #[test]
    fn an_ambiguous_swap_that_finds_its_own_value_is_ours() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let first = Assignment::first("db", "a", now);
        let ours = first.successor("b", now);
        let theirs = first.successor("c", now);
        let swapped = CasOutcome::Swapped;
        // A txn that succeeded is a swap, whatever came before.
        assert_eq!(cas_outcome(true, false, None, &ours), swapped);
        assert_eq!(cas_outcome(true, true, None, &ours), swapped);
        // A timeout, a retry on another member, and our own value in the way: our first attempt won.
        assert_eq!(cas_outcome(false, true, Some(ours.clone()), &ours), swapped);
        // Someone else's value, or none, is a conflict, ambiguous or not.
        let conflict = CasOutcome::Conflict(Some(theirs.clone()));
        assert_eq!(cas_outcome(false, true, Some(theirs.clone()), &ours), conflict);
        assert_eq!(cas_outcome(false, false, Some(theirs), &ours), conflict);
        assert_eq!(cas_outcome(false, true, None, &ours), CasOutcome::Conflict(None));
        // The same site and epoch at another time is another writer's.
        let later = first.successor("b", now + Duration::from_millis(1));
        assert_eq!(
            cas_outcome(false, true, Some(later.clone()), &ours),
            CasOutcome::Conflict(Some(later))
        );
        // Without a lost attempt, an equal value is not ours to claim.
        assert_eq!(
            cas_outcome(false, false, Some(ours.clone()), &ours),
            CasOutcome::Conflict(Some(ours))
        );
    }
}
