//! Files that appear whole or not at all: written under a temporary name beside their final
//! one (`.NAME.PID.tmp`), fsynced, renamed over it, the folder fsynced. A failure at any step
//! (a full disk, a permission, a kill) leaves the old file or the new one, never a mix, and
//! no temporary file once the writer is dropped.
//!
//! Every error says which file and which step: "writing /out/plan.jsonl: No space left on
//! device (os error 28)" (see [`FileError`]).
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// An I/O error with the file and the step it happened at.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}: {source}{}", path.display(), hint(source, path))]
pub struct FileError {
    /// `creating`, `writing`, `syncing`, `renaming into place`, ...
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl From<FileError> for std::io::Error {
    fn from(e: FileError) -> Self {
        std::io::Error::new(e.source.kind(), e.to_string())
    }
}

/// What the user can do about the common causes: space, quota, permissions, a read-only file
/// system.
pub fn hint(e: &std::io::Error, path: &Path) -> String {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(path);
    match e.raw_os_error() {
        Some(28) => format!(" (the file system holding {} is full: free space there, or write elsewhere)", dir.display()),
        Some(122) => format!(" (the disk quota of {} is used up: free space, or write elsewhere)", dir.display()),
        Some(13) | Some(1) => format!(" (no permission to write in {}: fix its permissions or ownership, or write elsewhere)", dir.display()),
        Some(30) => format!(" ({} is on a read-only file system: write elsewhere)", dir.display()),
        _ => String::new(),
    }
}

/// Attaches the file and the step to an I/O result.
pub trait At<T> {
    fn at(self, op: &'static str, path: &Path) -> Result<T, FileError>;
}

impl<T> At<T> for std::io::Result<T> {
    fn at(self, op: &'static str, path: &Path) -> Result<T, FileError> {
        self.map_err(|source| FileError { op, path: path.to_path_buf(), source })
    }
}

/// The temporary name of `dest`'s next version: `.NAME.PID.tmp` beside it (the process id
/// keeps two writers of one file, a worker and the one that took over its lease, apart).
pub fn temp_name(dest: &Path) -> PathBuf {
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dest.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Whether `file` (a name in a folder) is a temporary file of `name` in that folder.
pub fn is_temp_of(file: &str, name: &str) -> bool {
    file.strip_prefix('.').and_then(|r| r.strip_prefix(name)).and_then(|r| r.strip_prefix('.')).and_then(|r| r.strip_suffix(".tmp")).is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// fsyncs a folder, so a rename or removal in it is durable (best effort: some file systems
/// cannot sync a directory).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// A file being written under its temporary name; [`AtomicFile::commit`] puts it in place.
/// Dropped without a commit, it removes the temporary file.
pub struct AtomicFile {
    tmp: PathBuf,
    dest: PathBuf,
    file: Option<BufWriter<File>>,
}

impl AtomicFile {
    pub fn create(dest: &Path) -> Result<Self, FileError> {
        let dir = dest.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        fs::create_dir_all(dir).at("creating the folder", dir)?;
        let tmp = temp_name(dest);
        let f = File::create(&tmp).at("creating", &tmp)?;
        Ok(AtomicFile { tmp, dest: dest.to_path_buf(), file: Some(BufWriter::with_capacity(1 << 16, f)) })
    }

    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Where the bytes are until the commit (flush first to read them back).
    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }

    /// Flushes, fsyncs, renames over the final name and fsyncs the folder.
    pub fn commit(mut self) -> Result<(), FileError> {
        let w = self.file.take().expect("open until committed");
        let f = w.into_inner().map_err(|e| e.into_error()).at("writing", &self.dest)?;
        Self::finish(f, &self.tmp, &self.dest)
    }

    /// The last steps for a file already written to `tmp`.
    pub fn finish(f: File, tmp: &Path, dest: &Path) -> Result<(), FileError> {
        let r = f.sync_all().at("syncing", dest);
        drop(f);
        let r = r.and_then(|_| fs::rename(tmp, dest).at("renaming into place", dest));
        if r.is_err() {
            let _ = fs::remove_file(tmp);
        }
        r?;
        if let Some(dir) = dest.parent() {
            sync_dir(dir);
        }
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let dest = self.dest.clone();
        self.file.as_mut().expect("open until committed").write(b).at("writing", &dest).map_err(Into::into)
    }
    fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        let dest = self.dest.clone();
        self.file.as_mut().expect("open until committed").write_all(b).at("writing", &dest).map_err(Into::into)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let dest = self.dest.clone();
        self.file.as_mut().expect("open until committed").flush().at("writing", &dest).map_err(Into::into)
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `bytes` as `dest`, whole or not at all.
pub fn write_atomic(dest: &Path, bytes: &[u8]) -> Result<(), FileError> {
    let mut f = AtomicFile::create(dest)?;
    f.write_all(bytes).map_err(|source| FileError { op: "writing", path: dest.to_path_buf(), source })?;
    f.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_appears_whole_and_a_dropped_one_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/a.json");
        write_atomic(&p, b"one").unwrap();
        let mut f = AtomicFile::create(&p).unwrap();
        f.write_all(b"two, longer").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"one", "the old file until the commit");
        drop(f);
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert_eq!(fs::read_dir(d.path().join("sub")).unwrap().count(), 1, "no temporary file left");
        let mut f = AtomicFile::create(&p).unwrap();
        f.write_all(b"three").unwrap();
        f.commit().unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"three");
        assert!(is_temp_of(&format!(".a.json.{}.tmp", std::process::id()), "a.json"));
        assert!(!is_temp_of(".a.json.x.tmp", "a.json") && !is_temp_of(".a.json.tmp", "a.json") && !is_temp_of("a.json", "a.json"));
    }

    #[test]
    fn errors_name_the_file_the_step_and_what_to_do() {
        let e = FileError { op: "writing", path: "/data/out/plan.jsonl".into(), source: std::io::Error::from_raw_os_error(28) };
        let m = e.to_string();
        assert!(m.starts_with("writing /data/out/plan.jsonl: No space left on device"), "{m}");
        assert!(m.contains("/data/out is full"), "{m}");
        let e = FileError { op: "creating", path: "/ro/x".into(), source: std::io::Error::from_raw_os_error(13) };
        assert!(e.to_string().contains("no permission to write in /ro"), "{e}");
    }
}
