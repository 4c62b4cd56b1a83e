//! Per-shard checkpoints: `DIR/journal/NAME.journal`, one entry per finished video, so a
//! killed worker resumes mid-shard without redoing finished videos.
use std::io::{Read, Write};
use std::path::Path;

use anyhow::Result;

use super::crash_point;

/// `VFJ2`: entries carry the rows' lag (`VFJ1` journals, without it, are started again).
const JOURNAL_MAGIC: &[u8; 4] = b"VFJ2";

/// One finished video of a shard.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// `lag`: how far the rows' frames lie from their times, (mean, max) seconds.
    /// `logits`: a classifier's logits averaged over the rows (`--predict`), else empty.
    /// `extra`: the further models' (rows, mean), in the plan's order (`--model A --model B`).
    Ok { idx: u32, rgb: Vec<Vec<u8>>, mean_rgb: Vec<f32>, seconds: f64, lag: (f64, f64), logits: Vec<f32>, extra: Vec<Features> },
    Failed { idx: u32, kind: String, reason: String },
}

/// One model's features of a video: quantized rows and the mean of the unquantized ones.
pub type Features = (Vec<Vec<u8>>, Vec<f32>);

fn put_features(b: &mut Vec<u8>, rows: &[Vec<u8>], mean: &[f32]) {
    b.extend_from_slice(&(rows.len() as u32).to_le_bytes());
    b.extend_from_slice(&(mean.len() as u32).to_le_bytes());
    for r in rows {
        b.extend_from_slice(r);
    }
    for m in mean {
        b.extend_from_slice(&m.to_le_bytes());
    }
}

/// (rows, mean) at `o` as [`put_features`] wrote them (rows as wide as the mean), and the
/// offset after them.
fn get_features(b: &[u8], o: usize) -> Option<(Features, usize)> {
    let u32_at = |o: usize| b.get(o..o + 4).map(|x| u32::from_le_bytes(x.try_into().unwrap()) as usize);
    let (rows, d) = (u32_at(o)?, u32_at(o + 4)?);
    let start = o + 8;
    let end = start + rows.checked_mul(d)?;
    let rgb = b.get(start..end)?.chunks(d.max(1)).map(<[u8]>::to_vec).collect();
    let mean = b.get(end..end + 4 * d)?.chunks(4).map(|x| f32::from_le_bytes(x.try_into().unwrap())).collect();
    Some(((rgb, mean), end + 4 * d))
}

impl Entry {
    pub fn idx(&self) -> u32 {
        match self {
            Entry::Ok { idx, .. } | Entry::Failed { idx, .. } => *idx,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut b = vec![];
        match self {
            Entry::Ok { idx, rgb, mean_rgb, seconds, lag, logits, extra } => {
                b.extend_from_slice(&idx.to_le_bytes());
                b.push(1);
                b.extend_from_slice(&(rgb.len() as u32).to_le_bytes());
                b.extend_from_slice(&(mean_rgb.len() as u32).to_le_bytes());
                b.extend_from_slice(&seconds.to_le_bytes());
                b.extend_from_slice(&lag.0.to_le_bytes());
                b.extend_from_slice(&lag.1.to_le_bytes());
                for r in rgb {
                    b.extend_from_slice(r);
                }
                for m in mean_rgb {
                    b.extend_from_slice(&m.to_le_bytes());
                }
                // Appended last: entries written without them read as having none.
                if !logits.is_empty() || !extra.is_empty() {
                    b.extend_from_slice(&(logits.len() as u32).to_le_bytes());
                    for v in logits {
                        b.extend_from_slice(&v.to_le_bytes());
                    }
                }
                if !extra.is_empty() {
                    b.extend_from_slice(&(extra.len() as u32).to_le_bytes());
                    for (rows, mean) in extra {
                        put_features(&mut b, rows, mean);
                    }
                }
            }
            Entry::Failed { idx, kind, reason } => {
                b.extend_from_slice(&idx.to_le_bytes());
                b.push(0);
                b.extend_from_slice(&(kind.len() as u32).to_le_bytes());
                b.extend_from_slice(kind.as_bytes());
                b.extend_from_slice(&(reason.len() as u32).to_le_bytes());
                b.extend_from_slice(reason.as_bytes());
            }
        }
        b
    }

    fn decode(b: &[u8]) -> Option<Entry> {
        let u32_at = |o: usize| b.get(o..o + 4).map(|x| u32::from_le_bytes(x.try_into().unwrap()));
        let idx = u32_at(0)?;
        match *b.get(4)? {
            1 => {
                let (rows, d) = (u32_at(5)? as usize, u32_at(9)? as usize);
                let f64_at = |o: usize| b.get(o..o + 8).and_then(|x| x.try_into().ok()).map(f64::from_le_bytes);
                let (seconds, lag) = (f64_at(13)?, (f64_at(21)?, f64_at(29)?));
                let rgb_end = 37 + rows.checked_mul(d)?;
                let rgb = b.get(37..rgb_end)?.chunks(d.max(1)).map(<[u8]>::to_vec).collect();
                let mean = b.get(rgb_end..rgb_end + 4 * d)?.chunks(4).map(|x| f32::from_le_bytes(x.try_into().unwrap())).collect();
                let l = rgb_end + 4 * d;
                let (logits, mut o) = match u32_at(l) {
                    Some(n) => (b.get(l + 4..l + 4 + 4 * n as usize)?.chunks(4).map(|x| f32::from_le_bytes(x.try_into().unwrap())).collect(), l + 4 + 4 * n as usize),
                    None => (vec![], l),
                };
                let mut extra = vec![];
                if let Some(n) = u32_at(o) {
                    o += 4;
                    for _ in 0..n {
                        let (f, next) = get_features(b, o)?;
                        extra.push(f);
                        o = next;
                    }
                }
                Some(Entry::Ok { idx, rgb, mean_rgb: mean, seconds, lag, logits, extra })
            }
            0 => {
                let kl = u32_at(5)? as usize;
                let kind = String::from_utf8(b.get(9..9 + kl)?.to_vec()).ok()?;
                let rl = u32_at(9 + kl)? as usize;
                let reason = String::from_utf8(b.get(13 + kl..13 + kl + rl)?.to_vec()).ok()?;
                Some(Entry::Failed { idx, kind, reason })
            }
            _ => None,
        }
    }
}

/// Append-only per-shard checkpoint file: `VFJ2`, the shard key (hex), then entries
/// `u32 len | u32 crc32c | zstd(entry)`, each fsynced.
pub struct Journal {
    file: std::fs::File,
}

impl Journal {
    /// Opens (or starts) the journal; returns the valid entries already in it. A journal of
    /// another key (the shard of other inputs or settings), or a torn last entry, is cut back to what is valid.
    pub fn open(path: &Path, key: &str) -> Result<(Journal, Vec<Entry>)> {
        std::fs::create_dir_all(path.parent().unwrap())?;
        let mut header = JOURNAL_MAGIC.to_vec();
        header.extend_from_slice(key.as_bytes());
        let mut entries = vec![];
        let mut valid = 0u64;
        if let Ok(mut f) = std::fs::File::open(path) {
            let mut buf = vec![];
            f.read_to_end(&mut buf)?;
            if buf.starts_with(&header) {
                let mut o = header.len();
                valid = o as u64;
                while o + 8 <= buf.len() {
                    let len = u32::from_le_bytes(buf[o..o + 4].try_into().unwrap()) as usize;
                    let crc = u32::from_le_bytes(buf[o + 4..o + 8].try_into().unwrap());
                    let Some(payload) = buf.get(o + 8..o + 8 + len) else { break };
                    if crc32c::crc32c(payload) != crc {
                        break;
                    }
                    let Some(e) = zstd::decode_all(payload).ok().and_then(|b| Entry::decode(&b)) else { break };
                    entries.push(e);
                    o += 8 + len;
                    valid = o as u64;
                }
            }
        }
        let mut file = std::fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(path)?;
        if valid == 0 {
            file.set_len(0)?;
            file.write_all(&header)?;
            file.sync_all()?;
        } else {
            file.set_len(valid)?;
        }
        use std::io::Seek;
        file.seek(std::io::SeekFrom::End(0))?;
        Ok((Journal { file }, entries))
    }

    pub fn append(&mut self, e: &Entry) -> Result<()> {
        let payload = zstd::encode_all(e.encode().as_slice(), 3)?;
        let mut rec = Vec::with_capacity(payload.len() + 8);
        rec.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        rec.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        rec.extend_from_slice(&payload);
        // Half an entry on disk is what a kill mid-write leaves; the reader cuts it off.
        let half = rec.len() / 2;
        self.file.write_all(&rec[..half])?;
        crash_point("journal_mid_entry");
        self.file.write_all(&rec[half..])?;
        self.file.sync_data()?;
        Ok(())
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_entries_round_trip_and_a_torn_tail_is_cut() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("j/x.journal");
        let hash = "ab".repeat(32);
        let a = Entry::Ok { idx: 0, rgb: vec![vec![1, 2, 3], vec![4, 5, 6]], mean_rgb: vec![0.5, -1.0, 2.0], seconds: 2.0, lag: (0.25, 0.5), logits: vec![], extra: vec![] };
        let b = Entry::Failed { idx: 2, kind: "corrupt".into(), reason: "bad NAL".into() };
        {
            let (mut j, e) = Journal::open(&p, &hash).unwrap();
            assert!(e.is_empty());
            j.append(&a).unwrap();
            j.append(&b).unwrap();
        }
        let full = std::fs::read(&p).unwrap();
        // A torn last entry (any cut inside it) is dropped; the first survives.
        for cut in [full.len() - 1, full.len() - 5, full.len() - 9] {
            std::fs::write(&p, &full[..cut]).unwrap();
            let (_, e) = Journal::open(&p, &hash).unwrap();
            assert_eq!(e, vec![a.clone()], "cut at {cut}");
            assert!(std::fs::metadata(&p).unwrap().len() < cut as u64 + 1);
        }
        // A flipped bit in an entry ends the valid prefix there.
        std::fs::write(&p, &full).unwrap();
        let mut bad = full.clone();
        let n = bad.len();
        bad[n - 3] ^= 0x40;
        std::fs::write(&p, &bad).unwrap();
        assert_eq!(Journal::open(&p, &hash).unwrap().1, vec![a.clone()]);
        // Logits (with --predict) round-trip; entries without them read as having none.
        let c = Entry::Ok { idx: 3, rgb: vec![vec![7; 3]], mean_rgb: vec![1.0; 3], seconds: 1.0, lag: (0.0, 0.0), logits: vec![1.5, -2.0, 0.25], extra: vec![] };
        assert_eq!(Entry::decode(&c.encode()), Some(c.clone()));
        assert_eq!(Entry::decode(&a.encode()), Some(a.clone()));
        // Further models' features round-trip, with logits and without.
        for logits in [vec![], vec![0.5f32, 1.0]] {
            let extra = vec![(vec![vec![1u8, 2], vec![3, 4]], vec![0.25f32, -0.5]), (vec![vec![9u8; 4]], vec![1.0f32; 4])];
            let e = Entry::Ok { idx: 5, rgb: vec![vec![7; 3]; 2], mean_rgb: vec![1.0; 3], seconds: 2.0, lag: (0.1, 0.2), logits, extra };
            assert_eq!(Entry::decode(&e.encode()), Some(e.clone()));
            // A cut inside them is not read as fewer models.
            let b = e.encode();
            assert_eq!(Entry::decode(&b[..b.len() - 1]), None);
        }
        // Another plan's journal is discarded.
        std::fs::write(&p, &full).unwrap();
        assert!(Journal::open(&p, &"cd".repeat(32)).unwrap().1.is_empty());
    }

}
