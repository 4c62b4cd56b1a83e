//! Who works on a shard: `DIR/leases/NAME.lease`, created exclusively (O_EXCL), kept alive by a
//! heartbeat thread (mtime), taken over when older than the TTL or left by a dead process on
//! this host (a rename aside first: one taker wins).
//!
//! On a bucket the lease is an object, `URL/leases/NAME.lease`: created with create-if-absent,
//! its heartbeat a time in its body rewritten with compare-and-swap on its ETag, taken over
//! (when its heartbeat is older than the TTL) by a compare-and-swap too, so one taker wins.
//! Heartbeats are the workers' clocks: keep the nodes' clocks within a fraction of the TTL.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::{hostname, now_s};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LeaseBody {
    owner: String,
    host: String,
    pid: u32,
    acquired: u64,
    /// Last heartbeat, seconds since the epoch (lease objects; files use their mtime).
    #[serde(default)]
    beat: u64,
}

/// Age of a lease file (time since its last heartbeat), if it exists.
pub fn lease_age(path: &Path) -> Option<Duration> {
    let m = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(SystemTime::now().duration_since(m).unwrap_or_default())
}

/// A lease file's heartbeat stamp: its modification time, ns.
fn beat_stamp(path: &Path) -> u128 {
    std::fs::metadata(path).and_then(|m| m.modified()).ok().and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos())
}

pub(crate) fn lease_owner(path: &Path) -> Option<String> {
    serde_json::from_slice::<LeaseBody>(&std::fs::read(path).ok()?).ok().map(|b| b.owner)
}

/// A lease written by a process of this host that no longer exists (a worker killed and
/// restarted on the same node need not wait for the TTL).
pub(crate) fn owner_dead_here(path: &Path) -> bool {
    let Some(b) = std::fs::read(path).ok().and_then(|x| serde_json::from_slice::<LeaseBody>(&x).ok()) else { return false };
    if b.host != hostname() || b.pid <= 1 || b.pid == std::process::id() {
        return false;
    }
    let r = unsafe { libc::kill(b.pid as libc::pid_t, 0) };
    if r != 0 {
        return std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
    }
    // A process killed but not yet reaped by its parent (a zombie) still answers kill(pid, 0).
    zombie(b.pid)
}

/// Whether /proc says the process has exited (state Z or X) but is not yet reaped.
fn zombie(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // `pid (comm) S ...`: the state follows the last `)` (comm may hold parentheses).
    stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()).is_some_and(|s| s == "Z" || s == "X")
}

/// Where a lease lives.
enum Place {
    File(PathBuf),
    Object(String),
    /// None: a static slot on a bucket, whose shards are its own by construction.
    Nowhere,
}

/// A held lease: a heartbeat thread touches it; dropping it stops the heartbeat and removes
/// the file (or object) if it is still ours.
pub struct Lease {
    place: Place,
    owner: String,
    stop: Arc<AtomicBool>,
    lost: Arc<AtomicBool>,
    beat: Option<std::thread::JoinHandle<()>>,
}

pub enum TryLease {
    Got(Lease),
    /// Held by a live worker: (owner, seconds since its heartbeat, the heartbeat's own stamp:
    /// a file's modification time in ns, an object's beat time; it changes at each beat, so a
    /// waiter tells a live holder from a dead one before the TTL runs out).
    Busy(String, u64, u128),
}

impl Lease {
    pub fn try_acquire(path: &Path, owner: &str, ttl: Duration) -> Result<TryLease> {
        std::fs::create_dir_all(path.parent().unwrap())?;
        for _ in 0..3 {
            let body = LeaseBody { owner: owner.into(), host: hostname(), pid: std::process::id(), acquired: now_s(), beat: 0 };
            match std::fs::OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut f) => {
                    f.write_all(&serde_json::to_vec(&body)?)?;
                    f.sync_all()?;
                    return Ok(TryLease::Got(Lease::start(path, owner, ttl)));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let age = lease_age(path).unwrap_or_default();
                    if age < ttl && !owner_dead_here(path) {
                        return Ok(TryLease::Busy(lease_owner(path).unwrap_or_else(|| "?".into()), age.as_secs(), beat_stamp(path)));
                    }
                    // Stale: move it aside (rename is atomic: one taker wins), then retry the
                    // exclusive create.
                    let aside = path.with_extension(format!("stale.{}", std::process::id()));
                    if std::fs::rename(path, &aside).is_ok() {
                        tracing::info!(
                            "taking over {} from {} (no heartbeat for {} s)",
                            path.display(),
                            lease_owner(&aside).unwrap_or_else(|| "?".into()),
                            age.as_secs()
                        );
                        let _ = std::fs::remove_file(&aside);
                    }
                }
                Err(e) => return Err(e).with_context(|| format!("lease {}", path.display())),
            }
        }
        Ok(TryLease::Busy(lease_owner(path).unwrap_or_else(|| "?".into()), 0, beat_stamp(path)))
    }

    fn start(path: &Path, owner: &str, ttl: Duration) -> Lease {
        let (p, o) = (path.to_path_buf(), owner.to_string());
        Lease::beating(Place::File(path.to_path_buf()), owner, ttl, move || {
            if lease_owner(&p).as_deref() != Some(o.as_str()) {
                return false;
            }
            if let Ok(f) = std::fs::File::options().append(true).open(&p) {
                let _ = f.set_modified(SystemTime::now());
            }
            true
        })
    }

    /// A held lease whose heartbeat thread calls `beat` every TTL/4 until the lease is dropped;
    /// `beat` returning false means another worker took the lease over.
    fn beating(place: Place, owner: &str, ttl: Duration, mut beat: impl FnMut() -> bool + Send + 'static) -> Lease {
        let stop = Arc::new(AtomicBool::new(false));
        let lost = Arc::new(AtomicBool::new(false));
        let (st, lo) = (stop.clone(), lost.clone());
        let every = (ttl / 4).max(Duration::from_millis(100));
        let thread = std::thread::spawn(move || {
            let mut last = std::time::Instant::now();
            while !st.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50).min(every));
                if last.elapsed() < every {
                    continue;
                }
                last = std::time::Instant::now();
                if !beat() {
                    lo.store(true, Ordering::SeqCst);
                    return;
                }
            }
        });
        Lease { place, owner: owner.into(), stop, lost, beat: Some(thread) }
    }

    /// A lease nobody else competes for (a static slot's shard on a bucket: a worker restarted
    /// on another node must not wait for its own old lease; two workers given one index are
    /// not detected there).
    pub fn unguarded(owner: &str) -> Lease {
        Lease { place: Place::Nowhere, owner: owner.into(), stop: Arc::default(), lost: Arc::default(), beat: None }
    }

    /// The lease object `url` (see the module): `Got` when created or taken over from a
    /// holder whose heartbeat is older than `ttl`, else `Busy`.
    pub fn try_acquire_object(url: &str, owner: &str, ttl: Duration) -> Result<TryLease> {
        let body = || {
            let now = now_s();
            serde_json::to_vec(&LeaseBody { owner: owner.into(), host: hostname(), pid: std::process::id(), acquired: now, beat: now }).expect("lease body")
        };
        for _ in 0..3 {
            if let Some(Some(etag)) = vidfeat_store::create(url, body()).map_err(anyhow::Error::msg)? {
                return Ok(TryLease::Got(Lease::start_object(url, owner, ttl, etag)));
            }
            let (bytes, meta) = match vidfeat_store::read_versioned(url, 1 << 20) {
                Ok(x) => x,
                Err(e) if e.kind == "not_found" => continue, // released meanwhile: try again
                Err(e) => return Err(anyhow::Error::msg(e)),
            };
            let held: Option<LeaseBody> = serde_json::from_slice(&bytes).ok();
            let beat = held.as_ref().map_or(0, |b| b.beat.max(b.acquired));
            let age = now_s().saturating_sub(beat);
            let holder = held.map_or_else(|| "?".to_string(), |b| b.owner);
            if age < ttl.as_secs() {
                return Ok(TryLease::Busy(holder, age, beat as u128));
            }
            let Some(etag) = meta.etag else { return Ok(TryLease::Busy(holder, age, beat as u128)) };
            if let Some(Some(new)) = vidfeat_store::replace_if(url, body(), &etag).map_err(anyhow::Error::msg)? {
                tracing::info!("taking over {url} from {holder} (no heartbeat for {age} s)");
                return Ok(TryLease::Got(Lease::start_object(url, owner, ttl, new)));
            }
        }
        Ok(TryLease::Busy("?".into(), 0, 0))
    }

    fn start_object(url: &str, owner: &str, ttl: Duration, etag: String) -> Lease {
        let (u, o) = (url.to_string(), owner.to_string());
        let mut etag = etag;
        Lease::beating(Place::Object(url.to_string()), owner, ttl, move || {
            let now = now_s();
            let body = LeaseBody { owner: o.clone(), host: hostname(), pid: std::process::id(), acquired: now, beat: now };
            // Our version or nothing: another worker's takeover changed the ETag.
            match vidfeat_store::replace_if(&u, serde_json::to_vec(&body).expect("lease body"), &etag) {
                Ok(Some(Some(new))) => {
                    etag = new;
                    true
                }
                Ok(_) => false,
                Err(e) => {
                    tracing::warn!("lease heartbeat {u}: {e} (trying again)");
                    true
                }
            }
        })
    }

    /// Still ours (no other worker took it over)?
    pub fn held(&self) -> bool {
        !self.lost.load(Ordering::SeqCst)
            && match &self.place {
                Place::File(p) => lease_owner(p).as_deref() == Some(self.owner.as_str()),
                // The heartbeat's compare-and-swap finds a takeover.
                Place::Object(_) | Place::Nowhere => true,
            }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(b) = self.beat.take() {
            let _ = b.join();
        }
        match &self.place {
            Place::File(p) => {
                if lease_owner(p).as_deref() == Some(self.owner.as_str()) {
                    let _ = std::fs::remove_file(p);
                }
            }
            Place::Object(u) => {
                let ours = vidfeat_store::read(u, 1 << 20).ok().and_then(|b| serde_json::from_slice::<LeaseBody>(&b).ok()).is_some_and(|b| b.owner == self.owner);
                if ours && !self.lost.load(Ordering::SeqCst) {
                    let _ = vidfeat_store::delete(u);
                }
            }
            Place::Nowhere => {}
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_exclusive_and_stale_ones_are_taken_over() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("leases/a.lease");
        let ttl = Duration::from_secs(60);
        let TryLease::Got(l) = Lease::try_acquire(&p, "w1", ttl).unwrap() else { panic!("free lease") };
        assert!(matches!(Lease::try_acquire(&p, "w2", ttl).unwrap(), TryLease::Busy(o, _, _) if o == "w1"));
        assert!(l.held());
        // w1 dies without releasing (forget skips Drop); its heartbeat stops. Age the file.
        std::mem::forget(l);
        let f = std::fs::File::options().append(true).open(&p).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(120)).unwrap();
        let TryLease::Got(l2) = Lease::try_acquire(&p, "w2", ttl).unwrap() else { panic!("stale lease not taken over") };
        assert!(l2.held());
        assert_eq!(lease_owner(&p).as_deref(), Some("w2"));
        drop(l2);
        assert!(!p.exists(), "released on drop");
    }
}
