//! Who works on a shard: `DIR/leases/NAME.lease`, created exclusively (O_EXCL), kept alive by a
//! heartbeat thread (mtime), taken over when older than the TTL or left by a dead process on
//! this host (a rename aside first: one taker wins).
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
}

/// Age of a lease file (time since its last heartbeat), if it exists.
pub fn lease_age(path: &Path) -> Option<Duration> {
    let m = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(SystemTime::now().duration_since(m).unwrap_or_default())
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

/// A held lease: a heartbeat thread touches it; dropping it stops the heartbeat and removes
/// the file if it is still ours.
pub struct Lease {
    path: PathBuf,
    owner: String,
    stop: Arc<AtomicBool>,
    lost: Arc<AtomicBool>,
    beat: Option<std::thread::JoinHandle<()>>,
}

pub enum TryLease {
    Got(Lease),
    /// Held by a live worker: (owner, seconds since its heartbeat).
    Busy(String, u64),
}

impl Lease {
    pub fn try_acquire(path: &Path, owner: &str, ttl: Duration) -> Result<TryLease> {
        std::fs::create_dir_all(path.parent().unwrap())?;
        for _ in 0..3 {
            let body = LeaseBody { owner: owner.into(), host: hostname(), pid: std::process::id(), acquired: now_s() };
            match std::fs::OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut f) => {
                    f.write_all(&serde_json::to_vec(&body)?)?;
                    f.sync_all()?;
                    return Ok(TryLease::Got(Lease::start(path, owner, ttl)));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let age = lease_age(path).unwrap_or_default();
                    if age < ttl && !owner_dead_here(path) {
                        return Ok(TryLease::Busy(lease_owner(path).unwrap_or_else(|| "?".into()), age.as_secs()));
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
        Ok(TryLease::Busy(lease_owner(path).unwrap_or_else(|| "?".into()), 0))
    }

    fn start(path: &Path, owner: &str, ttl: Duration) -> Lease {
        let stop = Arc::new(AtomicBool::new(false));
        let lost = Arc::new(AtomicBool::new(false));
        let (p, o, st, lo) = (path.to_path_buf(), owner.to_string(), stop.clone(), lost.clone());
        let every = (ttl / 4).max(Duration::from_millis(100));
        let beat = std::thread::spawn(move || {
            let mut last = std::time::Instant::now();
            while !st.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50).min(every));
                if last.elapsed() < every {
                    continue;
                }
                last = std::time::Instant::now();
                if lease_owner(&p).as_deref() != Some(o.as_str()) {
                    lo.store(true, Ordering::SeqCst);
                    return;
                }
                if let Ok(f) = std::fs::File::options().append(true).open(&p) {
                    let _ = f.set_modified(SystemTime::now());
                }
            }
        });
        Lease { path: path.to_path_buf(), owner: owner.into(), stop, lost, beat: Some(beat) }
    }

    /// Still ours (no other worker took it over)?
    pub fn held(&self) -> bool {
        !self.lost.load(Ordering::SeqCst) && lease_owner(&self.path).as_deref() == Some(self.owner.as_str())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(b) = self.beat.take() {
            let _ = b.join();
        }
        if lease_owner(&self.path).as_deref() == Some(self.owner.as_str()) {
            let _ = std::fs::remove_file(&self.path);
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
        assert!(matches!(Lease::try_acquire(&p, "w2", ttl).unwrap(), TryLease::Busy(o, _) if o == "w1"));
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
