//! The randomized crash/partition test of automatic failover (DESIGN §5.4, §6.3): the
//! partition [`Stack`] (sites a and b, the witness w, etcd, PostgreSQL at a with a streaming
//! standby at b, agents everywhere), a writer in the witness's namespace that tries to write at
//! both sites all the time, and many rounds of one random fault each — isolate the primary,
//! isolate the standby, cut a↔b, isolate the witness, SIGKILL the primary's agent, SIGKILL the
//! primary's PostgreSQL — held 2–8 s, healed, then waited out until one site is primary and
//! the other its caught-up standby. Checks: never two writers (no two acknowledged writes at
//! different sites overlap in time, and the writes switch site no more often than failovers
//! succeeded), no acknowledged write lost beyond the RPO objective, and a sound final state.
//!
//! `RESURGO_CHAOS_SEED` (default [`DEFAULT_SEED`]) and `RESURGO_CHAOS_ROUNDS` (default
//! [`DEFAULT_ROUNDS`]) replay or lengthen a run.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::partition::Stack;
use crate::pg::pg_bin;
use crate::util::poll;

const DEFAULT_SEED: u64 = 0x5eed_c4a0_5000_0001;
const DEFAULT_ROUNDS: u32 = 16;
/// The dataset's `rpo` in the partition stack's spec.
const RPO: f64 = 2.0;
const PORT: &str = "5432";

/// xorshift64*: small, and the same sequence for the same seed everywhere.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    IsolatePrimary,
    IsolateStandby,
    CutAB,
    IsolateWitness,
    KillPrimaryAgent,
    KillPrimaryDatabase,
}

const FAULTS: [Fault; 6] = [
    Fault::IsolatePrimary,
    Fault::IsolateStandby,
    Fault::CutAB,
    Fault::IsolateWitness,
    Fault::KillPrimaryAgent,
    Fault::KillPrimaryDatabase,
];

/// One acknowledged write: times in seconds since the test's start.
#[derive(Clone, Debug)]
struct Ack {
    id: u64,
    site: &'static str,
    sent: f64,
    acked: f64,
}

/// A fault injected in a round, for the RPO check: begun at `at`, in force from `in_force`.
struct Injected {
    round: u32,
    fault: Fault,
    at: f64,
    in_force: f64,
    failovers: usize,
}

/// One `INSERT` through `psql` run inside the namespace `ns` against `host`; whether the server
/// acknowledged it (committed and answered).
fn insert(psql: &Path, ns: &str, host: &str, id: u64, site: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(psql)
        .args([
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            host,
            "-U",
            "nobody",
        ])
        .args(["-d", "postgres", "-p", PORT, "-c"])
        .arg(format!(
            "INSERT INTO t (id, site, at) VALUES ({id}, '{site}', clock_timestamp())"
        ))
        .env("PGCONNECT_TIMEOUT", "2")
        .env("PGOPTIONS", "-c statement_timeout=3000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Succeeded failover runs, as both site agents logged them.
fn failovers(stack: &Stack) -> usize {
    ["a", "b"]
        .iter()
        .flat_map(|n| stack.events(n))
        .filter(|e| e.0 == "failover_finished" && e.1.ends_with(": succeeded"))
        .count()
}

/// SIGKILLs the postmaster of `site` (its pid is in the service's `run.json`); the pid.
fn kill_database(stack: &Stack, site: &str) -> Option<i32> {
    let run = std::fs::read(stack.root.join(site).join("services/db/run.json")).ok()?;
    let run: serde_json::Value = serde_json::from_slice(&run).ok()?;
    let pid = i32::try_from(run["pid"].as_u64()?).ok()?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).ok()?;
    Some(pid)
}

fn other(site: &str) -> &'static str {
    if site == "a" {
        "b"
    } else {
        "a"
    }
}

fn count(stack: &Stack, node: &str) -> Option<u64> {
    stack.sql("w", node, "SELECT count(*) FROM t").ok()?.parse().ok()
}

/// Whether an agent of a or b is in the middle of a failover run (it may still promote).
fn run_in_progress(stack: &Stack) -> bool {
    ["a", "b"].iter().any(|n| {
        let events = stack.events(n);
        let of = |kind: &str| events.iter().filter(|e| e.0 == kind).count();
        of("failover_started") > of("failover_finished") + of("failover_failed")
    })
}

/// The primary when no failover run is in progress, one of a and b answers as primary and
/// the other as a standby that its agent measures streaming within the RPO, and that has
/// every row the primary had when asked.
fn stable(stack: &Stack) -> Option<&'static str> {
    if run_in_progress(stack) {
        return None;
    }
    let primary = match (stack.is_primary("a")?, stack.is_primary("b")?) {
        (true, false) => "a",
        (false, true) => "b",
        _ => return None,
    };
    // The standby's agent has measured it streaming and caught up since this call (what the
    // failover's lag gate reads): otherwise a next fault finds a stale or unknown lag.
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let standby = other(primary);
    let lag = stack.state(standby).join(format!("lag/orders@{standby}.json"));
    let measured = poll(Duration::from_secs(10), || {
        let lag: serde_json::Value = serde_json::from_slice(&std::fs::read(&lag).ok()?).ok()?;
        let fresh = lag["at_ms"].as_u64().is_some_and(|t| t > since);
        (fresh && lag["streaming"] == true && lag["seconds"].as_f64().is_some_and(|s| s <= RPO)).then_some(())
    });
    measured?;
    let rows = count(stack, primary)?;
    let caught_up = poll(Duration::from_secs(5), || {
        (count(stack, other(primary))? >= rows).then_some(())
    });
    caught_up.map(|()| primary)
}

#[test]
fn chaos_rounds_never_two_writers_and_no_acknowledged_write_lost_beyond_rpo() {
    let seed = std::env::var("RESURGO_CHAOS_SEED")
        .ok()
        .map(|s| {
            let s = s.trim();
            s.strip_prefix("0x")
                .map_or_else(|| s.parse(), |h| u64::from_str_radix(h, 16))
                .expect("RESURGO_CHAOS_SEED: a number (decimal or 0x…)")
        })
        .unwrap_or(DEFAULT_SEED);
    let rounds: u32 = std::env::var("RESURGO_CHAOS_ROUNDS")
        .ok()
        .map(|r| r.trim().parse().expect("RESURGO_CHAOS_ROUNDS: a number"))
        .unwrap_or(DEFAULT_ROUNDS);
    eprintln!("chaos: seed {seed:#x} ({seed}), {rounds} rounds (RESURGO_CHAOS_SEED, RESURGO_CHAOS_ROUNDS)");
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    let mut stack = Stack::start("chaos", Stack::FAST);
    stack.wait_ready();
    stack
        .sql(
            "w",
            "a",
            "CREATE TABLE t (id bigint PRIMARY KEY, site text NOT NULL, at timestamptz NOT NULL)",
        )
        .unwrap();
    let fail = |stack: &Stack, round: u32, what: String| -> ! {
        panic!(
            "chaos seed {seed:#x} (RESURGO_CHAOS_SEED={seed}), round {round}: {what}\n{}",
            stack.logs()
        )
    };

    // The writer: one thread per site, in the witness's namespace, each trying an INSERT every
    // 50 ms; ids from one counter, so they increase with the send time.
    let t0 = Instant::now();
    let t0_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let stop = Arc::new(AtomicBool::new(false));
    let next_id = Arc::new(AtomicU64::new(1));
    let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
    let tries = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|site| {
            let (stop, next_id, acks, tries) = (stop.clone(), next_id.clone(), acks.clone(), tries.clone());
            let ns = stack.lab.ns("w");
            let host = stack.lab.addr(site).to_string();
            let psql = pg_bin("psql");
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let tick = Instant::now();
                    let id = next_id.fetch_add(1, Ordering::SeqCst);
                    let sent = t0.elapsed().as_secs_f64();
                    tries.fetch_add(1, Ordering::Relaxed);
                    if insert(&psql, &ns, &host, id, site) {
                        let acked = t0.elapsed().as_secs_f64();
                        acks.lock().unwrap().push(Ack { id, site, sent, acked });
                    }
                    // Pacing, not synchronisation.
                    std::thread::sleep(Duration::from_millis(50).saturating_sub(tick.elapsed()));
                }
            })
        })
        .collect();

    let mut primary = "a";
    let mut injected: Vec<Injected> = Vec::new();
    for round in 1..=rounds {
        let fault = FAULTS[rng.range(0, FAULTS.len() as u64 - 1) as usize];
        let hold = Duration::from_millis(rng.range(2000, 8000));
        let standby = other(primary);
        let before = failovers(&stack);
        let seen: Vec<usize> = ["a", "b"].iter().map(|n| stack.events(n).len()).collect();
        let at = t0.elapsed().as_secs_f64();
        eprintln!(
            "round {round} at {at:.1} s: {fault:?} (primary {primary}, standby {standby}), held {:.1} s",
            hold.as_secs_f64()
        );
        let mut note = String::new();
        match fault {
            Fault::IsolatePrimary => stack.lab.isolate(primary),
            Fault::IsolateStandby => stack.lab.isolate(standby),
            Fault::CutAB => stack.lab.cut("a", "b"),
            Fault::IsolateWitness => stack.lab.isolate("w"),
            Fault::KillPrimaryAgent => stack.kill_agent(primary),
            Fault::KillPrimaryDatabase => match kill_database(&stack, primary) {
                Some(pid) => note = format!("postmaster {pid} killed"),
                None => fail(&stack, round, format!("cannot find or kill {primary}'s PostgreSQL")),
            },
        }
        // Injecting takes a moment (an isolation is several cuts): a write acknowledged until
        // then may still have gone to the old primary alone.
        let in_force = t0.elapsed().as_secs_f64();
        std::thread::sleep(hold); // the fault's duration, not synchronisation
        match fault {
            Fault::KillPrimaryAgent => stack.start_agent(primary),
            Fault::KillPrimaryDatabase => {
                // Did anything restart it? Then, as an operator would, restart the agent, which
                // serves its site again once the store confirms its role.
                let back = stack.is_primary(primary).is_some();
                note += if back {
                    "; restarted by resurgo during the hold"
                } else {
                    "; still down after the hold: restarting its agent"
                };
                if !back {
                    stack.kill_agent(primary);
                    stack.start_agent(primary);
                }
            }
            _ => stack.lab.heal(),
        }
        let healed = Instant::now();
        let now_primary = poll(Duration::from_secs(120), || {
            stack.check_agents();
            stable(&stack)
        })
        .unwrap_or_else(|| {
            fail(
                &stack,
                round,
                format!(
                    "{fault:?}: no stable pair within 120 s of the heal (a primary: {:?}, b primary: {:?})",
                    stack.is_primary("a"),
                    stack.is_primary("b")
                ),
            )
        });
        let after = failovers(&stack);
        for (node, seen) in ["a", "b"].into_iter().zip(seen) {
            for (kind, message, time) in stack.events(node).into_iter().skip(seen) {
                eprintln!("    {:.1} s {node}: {kind} {message}", time - t0_unix);
            }
        }
        let acked = acks.lock().unwrap().len();
        eprintln!(
            "round {round}: {fault:?} → primary {now_primary} (was {primary}), failovers +{}, stable {:.1} s after the heal, {acked} writes acknowledged so far{}{note}",
            after - before,
            healed.elapsed().as_secs_f64(),
            if note.is_empty() { "" } else { "; " },
        );
        if matches!(fault, Fault::CutAB | Fault::IsolateStandby | Fault::IsolateWitness)
            && (now_primary != primary || after != before)
        {
            fail(
                &stack,
                round,
                format!(
                    "{fault:?} must not move the primary: {primary} → {now_primary}, failovers +{}",
                    after - before
                ),
            );
        }
        if (now_primary != primary) != ((after - before) % 2 == 1) {
            fail(
                &stack,
                round,
                format!(
                    "the primary moved {primary} → {now_primary} but {} failover(s) succeeded",
                    after - before
                ),
            );
        }
        injected.push(Injected {
            round,
            fault,
            at,
            in_force,
            failovers: after - before,
        });
        primary = now_primary;
    }

    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let end = rounds + 1;
    let primary = poll(Duration::from_secs(120), || {
        stack.check_agents();
        stable(&stack)
    })
    .unwrap_or_else(|| fail(&stack, end, "no stable pair at the end".into()));
    let rows = count(&stack, primary).unwrap_or_else(|| fail(&stack, end, format!("cannot count at {primary}")));
    let standby_rows = poll(Duration::from_secs(30), || {
        count(&stack, other(primary)).filter(|n| *n == rows)
    });
    if standby_rows.is_none() {
        fail(
            &stack,
            end,
            format!(
                "the standby {} has {:?} rows, the primary {primary} {rows}",
                other(primary),
                count(&stack, other(primary))
            ),
        );
    }
    let ids: std::collections::BTreeSet<u64> = stack
        .sql("w", primary, "SELECT id FROM t")
        .unwrap_or_else(|e| fail(&stack, end, format!("cannot read the ids at {primary}: {e}")))
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();

    let mut acks = acks.lock().unwrap().clone();
    acks.sort_by_key(|a| a.id);
    let total = failovers(&stack);
    let secs = t0.elapsed().as_secs_f64();
    let (at_a, at_b) = (
        acks.iter().filter(|a| a.site == "a").count(),
        acks.iter().filter(|a| a.site == "b").count(),
    );
    eprintln!(
        "chaos: {} writes tried, {} acknowledged ({at_a} at a, {at_b} at b) in {secs:.0} s ({:.1}/s acknowledged); {total} failovers succeeded; final primary {primary} with {rows} rows",
        tries.load(Ordering::Relaxed),
        acks.len(),
        acks.len() as f64 / secs
    );
    let mut problems = Vec::new();
    if acks.len() < 20 {
        problems.push(format!(
            "only {} writes acknowledged: the writer did not work",
            acks.len()
        ));
    }

    // Never two writers: acknowledged writes at different sites never overlap in time…
    let mut by_send = acks.clone();
    by_send.sort_by(|x, y| x.sent.total_cmp(&y.sent));
    let mut overlaps = Vec::new();
    for (i, x) in by_send.iter().enumerate() {
        for y in &by_send[i + 1..] {
            if y.sent > x.acked {
                break;
            }
            if y.site != x.site {
                overlaps.push(format!(
                    "id {} at {} [{:.3}, {:.3}] and id {} at {} [{:.3}, {:.3}]",
                    x.id, x.site, x.sent, x.acked, y.id, y.site, y.sent, y.acked
                ));
            }
        }
    }
    if !overlaps.is_empty() {
        problems.push(format!(
            "two writers: {} overlapping acknowledged writes at different sites, first: {}",
            overlaps.len(),
            overlaps[..overlaps.len().min(5)].join("; ")
        ));
    }
    // …and they switch site no more often than failovers succeeded.
    let mut runs: Vec<(&str, u64, u64, f64, f64)> = Vec::new();
    for a in &acks {
        match runs.last_mut() {
            Some(r) if r.0 == a.site => {
                r.2 = a.id;
                r.4 = a.acked;
            }
            _ => runs.push((a.site, a.id, a.id, a.sent, a.acked)),
        }
    }
    let switches = runs.len().saturating_sub(1);
    eprintln!(
        "chaos: acknowledged writes by site: {}",
        runs.iter()
            .map(|r| format!("{} ids {}..={} ({:.1}–{:.1} s)", r.0, r.1, r.2, r.3, r.4))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if switches > total {
        problems.push(format!(
            "two writers: the acknowledged writes switch site {switches} times, but only {total} failovers succeeded"
        ));
    }

    // No acknowledged write lost beyond the RPO: a write missing at the end must have been
    // acknowledged within the RPO before a fault that caused a failover (or while it was
    // being injected).
    let lost: Vec<&Ack> = acks.iter().filter(|a| !ids.contains(&a.id)).collect();
    let excused = |a: &Ack| {
        injected
            .iter()
            .any(|f| f.failovers > 0 && a.acked <= f.in_force && a.acked >= f.at - RPO)
    };
    let describe = |a: &&Ack| {
        let near = injected
            .iter()
            .rfind(|f| a.acked >= f.at - RPO)
            .map(|f| format!(" (round {} {:?} at {:.3})", f.round, f.fault, f.at))
            .unwrap_or_default();
        format!("id {} at {} acknowledged at {:.3}{near}", a.id, a.site, a.acked)
    };
    let (within, beyond): (Vec<&Ack>, Vec<&Ack>) = lost.into_iter().partition(|a| excused(a));
    eprintln!(
        "chaos: {} acknowledged writes lost within the RPO of a failover{}",
        within.len(),
        if within.is_empty() {
            String::new()
        } else {
            format!(": {}", within.iter().map(describe).collect::<Vec<_>>().join("; "))
        }
    );
    if !beyond.is_empty() {
        problems.push(format!(
            "{} acknowledged writes lost beyond the RPO ({RPO} s): {}",
            beyond.len(),
            beyond.iter().take(20).map(describe).collect::<Vec<_>>().join("; ")
        ));
    }
    if !problems.is_empty() {
        fail(&stack, end, problems.join("\n"));
    }
    eprintln!(
        "chaos: seed {seed:#x} passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
}
