//! Password attempts counted in Redis, shared by replicas (feature `redis`; DESIGN.md,
//! decision 49).
//!
//! The same policy as the parent module's tables, step for step: an attempt is counted before
//! its password is verified and given back when it succeeds or cannot be checked; the lock is
//! per (account, source); failures spread over several sources put the account (or, for
//! spraying, the address) in slow mode for sources without a device cookie. Each step — begin,
//! succeeded, failed, abandoned — is one Lua script, so it is atomic across replicas whatever
//! they do at the same time, and the script is the tables' code written again over Redis
//! hashes (the differential test runs both on the same random sequences). The caller passes
//! its clock (Unix milliseconds) instead of the script reading `TIME`, as the rate limiter
//! does: the script is deterministic, tests can drive it, and replicas need synchronised
//! clocks (skew shifts a window, it never lengthens a lock beyond its duration).
//!
//! Keys are `<prefix>pw:` (a pair), `pwa:` (an account's spread) and `pwi:` (an address's)
//! followed by a keyed hash of what they count: no account name, address or device id is
//! stored in clear, and no password ever reaches Redis. Each key expires when its window or
//! lock is over, plus [`IN_FLIGHT_GRACE`] for the attempts still being verified then. As
//! locally, each kind holds at most [`MAX_TRACKED`] keys: a sorted set per kind (`pwx:`) holds
//! their names by expiry, and a new key finding it full of live ones is not tracked.

use std::{net::IpAddr, sync::Arc, time::Duration};

use ::redis::Script;

use super::{Resolution, Source};
use crate::{
    auth::lockout::{Lockout, MAX_TRACKED},
    redis_link::RedisLink,
};

/// How long a key outlives its window or lock: the attempts begun just before its end are
/// still resolved against it (a password check waits at most 5 s for a worker, a `Login` hook
/// may take longer), as the local tables, which forget an entry only when they are full, would.
const IN_FLIGHT_GRACE: Duration = Duration::from_secs(60);

/// One step of an attempt. `KEYS`: the pair and the index of pairs, then for a source without
/// a device cookie the account's spread and its index, then with an address the address's
/// spread and its index. `ARGV`: the step (`b` begin, `s` succeeded, `f` failed, `a`
/// abandoned), now (the caller's Unix clock, ms), the limit, the window, the lock's duration,
/// the slow mode's admission interval, the grace (all ms), the most keys an index tracks, and
/// the parties: the source (for the account's spread) and the account (for the address's).
/// Begin returns -1 when the attempt is admitted (and counted), else the milliseconds to
/// wait; failed returns the milliseconds the pair is now locked, or 0.
const STEP: &str = r"
local op = ARGV[1]
local now = tonumber(ARGV[2])
local max = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local duration = tonumber(ARGV[5])
local interval = tonumber(ARGV[6])
local grace = tonumber(ARGV[7])
local cap = tonumber(ARGV[8])
local parties = {ARGV[9], ARGV[10]}

local function int(x) return string.format('%d', x) end

-- s: window start, f: failures and attempts in flight, l: locked until (0: not locked);
-- spreads also p: the window's first party, v: several parties, n: next admission.
local function load(key)
  local v = redis.call('HMGET', key, 's', 'f', 'l', 'p', 'v', 'n')
  if not v[1] then return nil end
  return {s = tonumber(v[1]), f = tonumber(v[2]), l = tonumber(v[3]),
          p = v[4] or '', v = v[5] == '1', n = tonumber(v[6] or now)}
end

local function entry(key, index)
  local c = load(key)
  if c then return c end
  if redis.call('ZCARD', index) >= cap then
    redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
    if redis.call('ZCARD', index) >= cap then return nil end
  end
  return {s = now, f = 0, l = 0, p = '', v = false, n = now, dirty = true}
end

local function locked(c)
  if c.l > now then return c.l - now end
  return nil
end

local function roll(c)
  local over
  if c.l ~= 0 then over = c.l <= now else over = math.max(now - c.s, 0) >= window end
  if over then
    if c.s ~= now then c.v = false end
    c.s = now
    c.f = 0
    c.l = 0
    c.dirty = true
  end
end

local function save(key, index, c, spread)
  local ends = c.s + window
  if c.l ~= 0 then ends = c.l end
  local ttl = math.max(ends - now, 0) + grace
  if spread then
    redis.call('HSET', key, 's', int(c.s), 'f', int(c.f), 'l', int(c.l), 'p', c.p,
      'v', c.v and '1' or '0', 'n', int(c.n))
  else
    redis.call('HSET', key, 's', int(c.s), 'f', int(c.f), 'l', int(c.l))
  end
  redis.call('PEXPIRE', key, int(ttl))
  redis.call('ZADD', index, int(now + ttl), key)
  if redis.call('PTTL', index) < ttl then redis.call('PEXPIRE', index, int(ttl)) end
end

if op == 'b' then
  local wait = -1
  local pair = entry(KEYS[1], KEYS[2])
  if pair then
    roll(pair)
    local left = locked(pair)
    if left then
      wait = left
    elseif pair.f >= max then
      wait = math.max(window - math.max(now - pair.s, 0), 0)
    end
  end
  local spreads = {}
  if wait < 0 then
    for i = 3, #KEYS, 2 do
      local c = entry(KEYS[i], KEYS[i + 1])
      if c then spreads[#spreads + 1] = {KEYS[i], KEYS[i + 1], c, parties[(i - 1) / 2]} end
    end
    for _, spread in ipairs(spreads) do
      local c = spread[3]
      roll(c)
      if locked(c) and now < c.n then
        wait = c.n - now
        break
      end
    end
  end
  if wait < 0 then
    if pair then
      pair.f = pair.f + 1
      pair.dirty = true
    end
    for _, spread in ipairs(spreads) do
      local c = spread[3]
      if locked(c) then c.n = now + interval end
      if c.f == 0 and not c.v then
        c.p = spread[4]
      elseif spread[4] ~= c.p then
        c.v = true
      end
      c.f = c.f + 1
      c.dirty = true
    end
  end
  if pair and pair.dirty then save(KEYS[1], KEYS[2], pair, false) end
  for _, spread in ipairs(spreads) do
    if spread[3].dirty then save(spread[1], spread[2], spread[3], true) end
  end
  return wait
end

local result = 0
if op == 's' then
  if redis.call('DEL', KEYS[1]) == 1 then redis.call('ZREM', KEYS[2], KEYS[1]) end
else
  local pair = load(KEYS[1])
  if pair then
    if op == 'a' then
      pair.f = math.max(pair.f - 1, 0)
      save(KEYS[1], KEYS[2], pair, false)
    elseif not locked(pair) and pair.f >= max then
      pair.l = now + duration
      pair.f = 0
      pair.s = now
      save(KEYS[1], KEYS[2], pair, false)
      result = duration
    end
  end
end
for i = 3, #KEYS, 2 do
  local c = load(KEYS[i])
  if c then
    if op == 'f' then
      if c.v and c.f >= max and not locked(c) then
        c.l = now + duration
        c.n = now + interval
        save(KEYS[i], KEYS[i + 1], c, true)
      end
    else
      c.f = math.max(c.f - 1, 0)
      save(KEYS[i], KEYS[i + 1], c, true)
    end
  end
end
return result
";

/// The password guard's counts in Redis (built from a [`RedisLockout`](crate::RedisLockout)
/// given to `AuthorizationServer::shared_lockout`).
#[derive(Debug)]
pub(crate) struct SharedPasswords {
    link: Arc<RedisLink>,
    script: Script,
    /// The sorted sets naming the live keys of each kind: pairs, accounts, addresses.
    indexes: [String; 3],
    /// The most keys of one kind.
    cap: usize,
}

/// The Redis keys and parties of one attempt.
#[derive(Debug)]
pub(crate) struct AttemptKeys {
    /// The pair and its index, then the spreads that apply and their indexes.
    keys: Vec<String>,
    /// The source, as the account's spread tells parties apart.
    source_party: String,
    /// The account, as the address's spread tells parties apart.
    account_party: String,
}

impl SharedPasswords {
    pub(crate) fn new(link: Arc<RedisLink>) -> Self {
        Self::with_cap(link, MAX_TRACKED)
    }

    pub(crate) fn with_cap(link: Arc<RedisLink>, cap: usize) -> Self {
        let indexes = [b"pairs".as_slice(), b"accounts", b"addresses"]
            .map(|kind| link.key("pwx", &[b"password index\0", kind]));
        Self {
            link,
            script: Script::new(STEP),
            indexes,
            cap,
        }
    }

    /// The keys of an attempt at `account` (already lower-cased) from `source`, the spreads
    /// only for a source without a device cookie (as locally).
    pub(crate) fn keys(
        &self,
        account: &str,
        source: Source,
        address: Option<IpAddr>,
    ) -> AttemptKeys {
        let source_bytes = match source {
            Source::Device(id) => [b"d".as_slice(), &id].concat(),
            Source::Address(addr) => address_bytes(addr),
        };
        let account = account.as_bytes();
        let mut keys = vec![
            self.link
                .key("pw", &[b"password pair\0", &source_bytes, account]),
            self.indexes[0].clone(),
        ];
        if let Source::Address(_) = source {
            keys.push(self.link.key("pwa", &[b"password account\0", account]));
            keys.push(self.indexes[1].clone());
            if let Some(address) = address {
                keys.push(
                    self.link
                        .key("pwi", &[b"password address\0", &address_bytes(address)]),
                );
                keys.push(self.indexes[2].clone());
            }
        }
        AttemptKeys {
            keys,
            source_party: self.link.tag(&[b"password source\0", &source_bytes]),
            account_party: self.link.tag(&[b"password account\0", account]),
        }
    }

    /// Checks and counts an attempt in Redis: `Ok(Ok(()))` when it is admitted (and counted),
    /// `Ok(Err(wait))` when it may not be made; `Err` when Redis did not answer in time
    /// (already logged).
    pub(crate) async fn begin(
        &self,
        keys: &AttemptKeys,
        policy: &Lockout,
        now_ms: u64,
    ) -> Result<Result<(), Duration>, ()> {
        let answer = self.step("b", keys, policy, now_ms).await?;
        Ok(match u64::try_from(answer) {
            Ok(wait) => Err(Duration::from_millis(wait)),
            Err(_) => Ok(()),
        })
    }

    /// Resolves an attempt Redis counted: `Ok` with how long its pair is now locked, if this
    /// failure locked it; `Err` when Redis did not answer in time (already logged).
    pub(super) async fn resolve(
        &self,
        keys: &AttemptKeys,
        resolution: Resolution,
        policy: &Lockout,
        now_ms: u64,
    ) -> Result<Option<Duration>, ()> {
        let op = match resolution {
            Resolution::Succeeded => "s",
            Resolution::Failed => "f",
            Resolution::Abandoned => "a",
        };
        let answer = self.step(op, keys, policy, now_ms).await?;
        Ok(u64::try_from(answer)
            .ok()
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis))
    }

    async fn step(
        &self,
        op: &str,
        keys: &AttemptKeys,
        policy: &Lockout,
        now_ms: u64,
    ) -> Result<i64, ()> {
        let (script, cap) = (&self.script, self.cap);
        let grace = millis(IN_FLIGHT_GRACE);
        let answer = self
            .link
            .exchange(|mut connection| async move {
                let mut invocation = script.prepare_invoke();
                for key in &keys.keys {
                    invocation.key(key);
                }
                invocation
                    .arg(op)
                    .arg(now_ms)
                    .arg(policy.max_failures)
                    .arg(millis(policy.window))
                    .arg(millis(policy.duration))
                    .arg(millis(policy.admission_interval()))
                    .arg(grace)
                    .arg(cap)
                    .arg(&keys.source_party)
                    .arg(&keys.account_party)
                    .invoke_async::<i64>(&mut connection)
                    .await
            })
            .await;
        answer.map_err(|error| {
            self.link
                .warn(&error, "counting password attempts in this replica only");
        })
    }
}

/// Milliseconds, rounded up: the local tables compare exact durations with instants, and a
/// whole-millisecond clock compared with the rounded-up value decides as they do.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

/// An address (normalised already) as the bytes its keys hash: a tag byte, then the octets.
fn address_bytes(addr: IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(v4) => [b"4".as_slice(), &v4.octets()].concat(),
        IpAddr::V6(v6) => [b"6".as_slice(), &v6.octets()].concat(),
    }
}

/// An attempt counted in Redis, until it is resolved there.
#[derive(Debug)]
pub(crate) struct SharedAttempt {
    shared: Arc<SharedPasswords>,
    keys: AttemptKeys,
}

impl SharedAttempt {
    pub(super) fn new(shared: Arc<SharedPasswords>, keys: AttemptKeys) -> Self {
        Self { shared, keys }
    }

    /// Resolves the attempt in Redis on a task of its own, and waits for it: the step completes
    /// even when the request waiting for it is abandoned. `Err` when Redis did not answer (or
    /// there is no runtime to run the task on).
    pub(super) async fn resolve(
        self,
        resolution: Resolution,
        policy: Lockout,
        now_ms: u64,
    ) -> Result<Option<Duration>, ()> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err(());
        };
        runtime
            .spawn(async move {
                self.shared
                    .resolve(&self.keys, resolution, &policy, now_ms)
                    .await
            })
            .await
            .unwrap_or(Err(()))
    }

    /// Resolves the attempt in Redis on a task of its own, without waiting (an attempt dropped
    /// unresolved). Outside a runtime it stays counted in Redis until its window ends.
    pub(super) fn resolve_later(self, resolution: Resolution, policy: Lockout, now_ms: u64) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = self
                    .shared
                    .resolve(&self.keys, resolution, &policy, now_ms)
                    .await;
            });
        }
    }
}

#[cfg(test)]
mod tests;
