//! An append-only journal of items on disk: what a persistent sending queue
//! (and the tail sampler's buffer) keep so that a restart, even after
//! `kill -9`, finds what was acknowledged and not yet delivered.
//!
//! Files: `NNNNNNNNNNNNNNNNNNNN.seg` segments, written in order and never
//! rewritten; each record is
//!
//! ```text
//! len: u32 LE | crc32: u32 LE (kind, seq, payload) | kind: u8 | seq: u64 LE | payload: len bytes
//! ```
//!
//! `ITEM` records hold a payload; `DONE` records (no payload) retire an item.
//! Reading back on open checks every record: a torn tail (the last write of a
//! killed process) or a corrupt record is skipped and counted, never trusted,
//! never a panic; new records go to a fresh segment. Segments are deleted
//! oldest first once every item in them and before them is done, so the
//! disk holds about the live items plus one segment.
//!
//! Writes are `write(2)` calls under one lock: a killed process loses
//! nothing it wrote (the page cache outlives it). With `fsync`, a flusher
//! thread makes them durable in groups (one `fdatasync` for every append
//! since the last), and [`Journal::durable`] waits for the group that holds
//! a given append, so a receiver can answer after its data is on disk
//! without a thread blocked per request.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

const HEADER: usize = 17;
const ITEM: u8 = 1;
const DONE: u8 = 2;
/// The largest record payload accepted on write and trusted on read.
pub(crate) const MAX_PAYLOAD: usize = 256 << 20;

/// Where an item's record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    segment: u64,
    offset: u64,
    len: u32,
}

impl Location {
    /// The payload's length.
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }
}

/// A journal item kept while anything holds it: dropping the last holder
/// retires the item (its `DONE` record is written).
pub(crate) struct Hold {
    journal: Arc<Journal>,
    seq: u64,
}

impl Hold {
    /// Item `seq` of `journal`, retired when the returned value's last clone goes.
    pub(crate) fn new(journal: Arc<Journal>, seq: u64) -> Arc<Hold> {
        Arc::new(Hold { journal, seq })
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.journal.done(self.seq);
    }
}

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hold").field("seq", &self.seq).finish()
    }
}

/// What opening found.
#[derive(Debug, Default)]
pub(crate) struct Recovery {
    /// Items written and not done, in sequence order.
    pub(crate) items: Vec<(u64, Location)>,
    /// Records that failed their checksum or were cut short, skipped.
    pub(crate) skipped_records: u64,
    /// Bytes of segments that could not be read as records, skipped.
    pub(crate) skipped_bytes: u64,
    /// One past the highest sequence number seen (items and done records):
    /// where new items start, so no number is used twice.
    pub(crate) next_seq: u64,
}

/// Settings of a journal.
#[derive(Debug, Clone)]
pub(crate) struct JournalOptions {
    /// Make appends durable with `fdatasync` before [`Journal::durable`] resolves.
    pub(crate) fsync: bool,
    /// A new segment starts past this size.
    pub(crate) segment_bytes: u64,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            fsync: false,
            segment_bytes: 16 << 20,
        }
    }
}

struct Segment {
    id: u64,
    file: Arc<File>,
    len: u64,
    /// Items in it not yet done.
    live: u64,
}

struct State {
    segments: VecDeque<Segment>,
    /// Appends so far (the ticket of the last one).
    appended: u64,
    /// Items not done, by sequence: their segment (for the live counts).
    where_: BTreeMap<u64, u64>,
    /// `DONE` records not written yet: they go with the next append (or
    /// when [`PENDING_DONE`] of them wait, or at close). One lost in a crash
    /// only sends its item again.
    pending_done: Vec<u8>,
}

/// `DONE` records written together at most this many at a time.
const PENDING_DONE: usize = 128;

/// An open journal directory (one writer: a lock file holds it).
pub(crate) struct Journal {
    dir: PathBuf,
    opts: JournalOptions,
    state: Mutex<State>,
    /// Appends made durable (fsync) so far.
    synced: tokio::sync::watch::Sender<u64>,
    dirty: Arc<(Mutex<bool>, Condvar)>,
    flusher: Mutex<Option<std::thread::JoinHandle<()>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    /// Bytes on disk now.
    bytes: AtomicU64,
    /// Appends that failed (a full disk, a file size limit).
    failed: AtomicU64,
    /// When the last append failed, milliseconds since the journal opened (0: never).
    failed_at_ms: AtomicU64,
    opened: std::time::Instant,
    _lock: LockFile,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

/// The checksum of a record: its kind, sequence number and payload (in parts).
fn crc(kind: u8, seq: u64, payload: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&[kind]);
    h.update(&seq.to_le_bytes());
    for p in payload {
        h.update(p);
    }
    h.finalize()
}

/// A record's header for a payload of `len` bytes in `payload`.
fn record_header(kind: u8, seq: u64, len: usize, payload: &[&[u8]]) -> [u8; HEADER] {
    let mut header = [0u8; HEADER];
    header[..4].copy_from_slice(&(len as u32).to_le_bytes());
    header[4..8].copy_from_slice(&crc(kind, seq, payload).to_le_bytes());
    header[8] = kind;
    header[9..].copy_from_slice(&seq.to_le_bytes());
    header
}

/// A new, empty segment `id` of `dir`, opened for appending.
fn new_segment(dir: &Path, id: u64) -> io::Result<Segment> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(segment_path(dir, id))?;
    Ok(Segment {
        id,
        file: Arc::new(file),
        len: 0,
        live: 0,
    })
}

/// `dir/LOCK` holding this process's id: a second collector on the same
/// directory is refused while the first lives; a dead owner's lock is taken over.
struct LockFile(PathBuf);

impl LockFile {
    fn take(dir: &Path) -> io::Result<LockFile> {
        let path = dir.join("LOCK");
        let me = std::process::id();
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(pid) = text.trim().parse::<u32>()
            && pid != me
            && Path::new(&format!("/proc/{pid}")).exists()
        {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} is in use by process {pid}", dir.display()),
            ));
        }
        std::fs::write(&path, me.to_string())?;
        Ok(LockFile(path))
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Reads one segment's records into `items`/`done`; what cannot be read is counted.
fn scan(bytes: &[u8], segment: u64, items: &mut BTreeMap<u64, Location>, recovery: &mut Recovery) {
    let mut at = 0usize;
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.len() < HEADER {
            recovery.skipped_records += 1;
            recovery.skipped_bytes += rest.len() as u64;
            return;
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let sum = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        let kind = rest[8];
        let mut seq_bytes = [0u8; 8];
        seq_bytes.copy_from_slice(&rest[9..17]);
        let seq = u64::from_le_bytes(seq_bytes);
        if len > MAX_PAYLOAD || HEADER + len > rest.len() {
            // A torn write or a broken length: nothing after it can be framed.
            recovery.skipped_records += 1;
            recovery.skipped_bytes += rest.len() as u64;
            return;
        }
        let payload = &rest[HEADER..HEADER + len];
        let intact = crc(kind, seq, &[payload]) == sum;
        if intact {
            recovery.next_seq = recovery.next_seq.max(seq.saturating_add(1));
        }
        if !intact || !matches!(kind, ITEM | DONE) {
            recovery.skipped_records += 1;
            recovery.skipped_bytes += (HEADER + len) as u64;
        } else if kind == ITEM {
            items.insert(
                seq,
                Location {
                    segment,
                    offset: (at + HEADER) as u64,
                    len: len as u32,
                },
            );
        } else {
            items.remove(&seq);
        }
        at += HEADER + len;
    }
}

impl Journal {
    /// Opens (creating) `dir`, reads what is there, and starts a fresh segment.
    ///
    /// # Errors
    ///
    /// When the directory cannot be created, locked, read or written.
    pub(crate) fn open(dir: &Path, opts: JournalOptions) -> io::Result<(Arc<Journal>, Recovery)> {
        std::fs::create_dir_all(dir)?;
        let lock = LockFile::take(dir)?;
        let mut ids: Vec<u64> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".seg")?.parse::<u64>().ok()
            })
            .collect();
        ids.sort_unstable();
        let mut recovery = Recovery::default();
        let mut items = BTreeMap::new();
        let mut segments = VecDeque::new();
        let mut bytes = 0u64;
        for id in &ids {
            let path = segment_path(dir, *id);
            let data = std::fs::read(&path)?;
            scan(&data, *id, &mut items, &mut recovery);
            bytes += data.len() as u64;
            segments.push_back(Segment {
                id: *id,
                file: Arc::new(File::open(&path)?),
                len: data.len() as u64,
                live: 0,
            });
        }
        let mut where_ = BTreeMap::new();
        for (seq, loc) in &items {
            where_.insert(*seq, loc.segment);
            if let Some(s) = segments.iter_mut().find(|s| s.id == loc.segment) {
                s.live += 1;
            }
        }
        recovery.items = items.into_iter().collect();
        // Always a fresh segment: never append after a torn tail.
        segments.push_back(new_segment(dir, ids.last().map_or(0, |l| l + 1))?);
        let (synced, _) = tokio::sync::watch::channel(0);
        let journal = Arc::new(Journal {
            dir: dir.to_owned(),
            opts,
            state: Mutex::new(State {
                segments,
                appended: 0,
                where_,
                pending_done: Vec::new(),
            }),
            synced,
            dirty: Arc::new((Mutex::new(false), Condvar::new())),
            flusher: Mutex::new(None),
            stop: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            bytes: AtomicU64::new(bytes),
            failed: AtomicU64::new(0),
            failed_at_ms: AtomicU64::new(0),
            opened: std::time::Instant::now(),
            _lock: lock,
        });
        journal.compact();
        if journal.opts.fsync {
            let weak = Arc::downgrade(&journal);
            let (dirty, stop) = (journal.dirty.clone(), journal.stop.clone());
            let handle = std::thread::Builder::new()
                .name("journal-fsync".into())
                .spawn(move || flush_loop(weak, dirty, stop))?;
            *crate::lock(&journal.flusher) = Some(handle);
        }
        Ok((journal, recovery))
    }

    /// Appends item `seq`; returns where it is and its ticket for [`durable`](Self::durable).
    ///
    /// # Errors
    ///
    /// When the write fails (a full disk): nothing is recorded.
    pub(crate) fn append(&self, seq: u64, payload: &[u8]) -> io::Result<(Location, u64)> {
        self.append_parts(seq, &[payload])
    }

    /// [`append`](Self::append) of a payload in parts (written as one, without joining them).
    ///
    /// # Errors
    ///
    /// As [`append`](Self::append).
    pub(crate) fn append_parts(&self, seq: u64, parts: &[&[u8]]) -> io::Result<(Location, u64)> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > MAX_PAYLOAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "item too large for the journal",
            ));
        }
        let header = record_header(ITEM, seq, len, parts);
        let mut st = crate::lock(&self.state);
        if st.segments.back().is_some_and(|s| s.len >= self.opts.segment_bytes) {
            self.rotate(&mut st)?;
        }
        let done = std::mem::take(&mut st.pending_done);
        let seg = st
            .segments
            .back_mut()
            .ok_or_else(|| io::Error::other("the journal has no segment"))?;
        if let Err(e) = write_parts(&seg.file, &done, &header, parts) {
            // A partial record may be on disk: start a fresh segment after it.
            let _ = self.rotate(&mut st);
            self.failed.fetch_add(1, Ordering::Relaxed);
            self.failed_at_ms
                .store(self.opened.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
            return Err(e);
        }
        seg.len += done.len() as u64;
        self.bytes.fetch_add(done.len() as u64, Ordering::Relaxed);
        let loc = Location {
            segment: seg.id,
            offset: seg.len + HEADER as u64,
            len: len as u32,
        };
        seg.len += (HEADER + len) as u64;
        seg.live += 1;
        let id = seg.id;
        st.where_.insert(seq, id);
        st.appended += 1;
        let ticket = st.appended;
        drop(st);
        self.bytes.fetch_add((HEADER + len) as u64, Ordering::Relaxed);
        if self.opts.fsync {
            self.wake_flusher();
        } else {
            self.synced.send_replace(ticket);
        }
        Ok((loc, ticket))
    }

    /// Waits until append `ticket` is durable (at once without `fsync`).
    pub(crate) async fn durable(&self, ticket: u64) {
        if !self.opts.fsync {
            return;
        }
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|s| *s >= ticket).await;
    }

    /// The newest ticket handed out.
    pub(crate) fn last_ticket(&self) -> u64 {
        crate::lock(&self.state).appended
    }

    /// Reads an item's payload back, checking its checksum.
    ///
    /// # Errors
    ///
    /// When the segment cannot be read or the record no longer matches its checksum.
    pub(crate) fn read(&self, seq: u64, loc: Location) -> io::Result<Vec<u8>> {
        let file = self.segment_file(loc)?;
        let mut header = [0u8; HEADER];
        file.read_exact_at(&mut header, loc.offset - HEADER as u64)?;
        let mut payload = vec![0u8; loc.len as usize];
        file.read_exact_at(&mut payload, loc.offset)?;
        let sum = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if crc(ITEM, seq, &[&payload]) != sum {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the item failed its checksum",
            ));
        }
        Ok(payload)
    }

    /// The last `n` bytes of an item's payload, without reading the rest
    /// (its checksum was checked when the journal was opened, and is checked
    /// again when the whole item is read).
    ///
    /// # Errors
    ///
    /// When the segment is gone or cannot be read, or the item is shorter than `n`.
    pub(crate) fn read_trailer(&self, loc: Location, n: usize) -> io::Result<Vec<u8>> {
        let at = (loc.len as usize)
            .checked_sub(n)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "the item is too short"))?;
        let file = self.segment_file(loc)?;
        let mut out = vec![0u8; n];
        file.read_exact_at(&mut out, loc.offset + at as u64)?;
        Ok(out)
    }

    fn segment_file(&self, loc: Location) -> io::Result<Arc<File>> {
        let st = crate::lock(&self.state);
        st.segments
            .iter()
            .find(|s| s.id == loc.segment)
            .map(|s| s.file.clone())
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the item's segment is gone"))
    }

    /// Retires item `seq`; segments with nothing live before them go.
    pub(crate) fn done(&self, seq: u64) {
        let mut st = crate::lock(&self.state);
        let Some(segment) = st.where_.remove(&seq) else {
            return;
        };
        if let Some(s) = st.segments.iter_mut().find(|s| s.id == segment) {
            s.live = s.live.saturating_sub(1);
        }
        st.pending_done.extend_from_slice(&record_header(DONE, seq, 0, &[]));
        if st.pending_done.len() >= PENDING_DONE * HEADER {
            Self::write_done(&mut st, &self.bytes);
        }
        drop(st);
        self.compact();
    }

    /// Writes the waiting `DONE` records.
    fn write_done(st: &mut State, bytes: &AtomicU64) {
        let done = std::mem::take(&mut st.pending_done);
        if done.is_empty() {
            return;
        }
        if let Some(seg) = st.segments.back_mut()
            && (&*seg.file).write_all(&done).is_ok()
        {
            seg.len += done.len() as u64;
            bytes.fetch_add(done.len() as u64, Ordering::Relaxed);
        }
    }

    /// Appends that failed so far.
    pub(crate) fn failed_appends(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Whether an append failed within the last second (new data is then refused upstream).
    pub(crate) fn failing(&self) -> bool {
        let at = self.failed_at_ms.load(Ordering::Relaxed);
        at != 0 && (self.opened.elapsed().as_millis() as u64 + 1).saturating_sub(at) < 1000
    }

    /// Bytes on disk.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Deletes leading segments that hold nothing live (never the newest).
    fn compact(&self) {
        let mut st = crate::lock(&self.state);
        // DONE records of an item live in a later segment: deleting oldest
        // first keeps every remaining item's DONE record with it or after it.
        while st.segments.len() > 1 && st.segments.front().is_some_and(|s| s.live == 0) {
            if let Some(s) = st.segments.pop_front()
                && std::fs::remove_file(segment_path(&self.dir, s.id)).is_ok()
            {
                self.bytes.fetch_sub(s.len.min(self.bytes()), Ordering::Relaxed);
            }
        }
    }

    fn rotate(&self, st: &mut State) -> io::Result<()> {
        let next = st.segments.back().map_or(0, |s| s.id + 1);
        st.segments.push_back(new_segment(&self.dir, next)?);
        Ok(())
    }

    /// Tells the flusher thread that appends wait for an fsync.
    fn wake_flusher(&self) {
        let (m, cv) = &*self.dirty;
        *crate::lock(m) = true;
        cv.notify_one();
    }

    /// Writes the waiting `DONE` records and asks the flusher for a last fsync, then to stop.
    fn finish_writes(&self) {
        Self::write_done(&mut crate::lock(&self.state), &self.bytes);
        self.stop.store(true, Ordering::Relaxed);
        self.wake_flusher();
    }

    /// Writes what waits, and stops the flusher after a last fsync.
    pub(crate) fn close(&self) {
        self.finish_writes();
        if let Some(h) = crate::lock(&self.flusher).take() {
            let _ = h.join();
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.finish_writes();
    }
}

/// Writes a record's header and payload parts with as few system calls as
/// the kernel allows (the file is in append mode: each call lands at the end).
fn write_parts(mut file: &File, done: &[u8], header: &[u8], parts: &[&[u8]]) -> io::Result<()> {
    let mut slices: Vec<io::IoSlice<'_>> = Vec::with_capacity(parts.len() + 2);
    slices.push(io::IoSlice::new(done));
    slices.push(io::IoSlice::new(header));
    slices.extend(parts.iter().map(|p| io::IoSlice::new(p)));
    let total: usize = slices.iter().map(|s| s.len()).sum();
    let written = file.write_vectored(&slices)?;
    if written == total {
        return Ok(());
    }
    // A short write (rare for files): write the rest as one buffer.
    let mut rest = Vec::with_capacity(total - written);
    let mut skip = written;
    for s in &slices {
        if skip >= s.len() {
            skip -= s.len();
            continue;
        }
        rest.extend_from_slice(&s[skip..]);
        skip = 0;
    }
    file.write_all(&rest)
}

/// fsyncs the newest segment whenever appends are waiting, then publishes
/// the tickets it covered.
fn flush_loop(
    journal: std::sync::Weak<Journal>,
    dirty: Arc<(Mutex<bool>, Condvar)>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    loop {
        {
            let (m, cv) = &*dirty;
            let mut d = crate::lock(m);
            while !*d {
                d = cv.wait(d).unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            *d = false;
        }
        let Some(j) = journal.upgrade() else { return };
        let (files, ticket) = {
            let st = crate::lock(&j.state);
            // Recently written segments (a rotation may leave appends in the previous one).
            let files: Vec<Arc<File>> = st.segments.iter().rev().take(2).map(|s| s.file.clone()).collect();
            (files, st.appended)
        };
        for f in files {
            if let Err(e) = f.sync_data() {
                tracing::error!("journal fsync failed in {}: {e}", j.dir.display());
            }
        }
        j.synced.send_replace(ticket);
        if stop.load(Ordering::Relaxed) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("journal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn items_survive_reopening_until_done() {
        let d = dir("reopen");
        let opts = JournalOptions {
            fsync: false,
            segment_bytes: 64,
        };
        {
            let (j, r) = Journal::open(&d, opts.clone()).unwrap();
            assert!(r.items.is_empty());
            for seq in 1..=5u64 {
                j.append(seq, format!("item-{seq}").as_bytes()).unwrap();
            }
            j.done(2);
            j.done(4);
        }
        let (j, r) = Journal::open(&d, opts.clone()).unwrap();
        let seqs: Vec<u64> = r.items.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, [1, 3, 5]);
        assert_eq!((r.skipped_records, r.skipped_bytes), (0, 0));
        for (seq, loc) in &r.items {
            assert_eq!(j.read(*seq, *loc).unwrap(), format!("item-{seq}").as_bytes());
        }
        // Everything done: the old segments go, one (empty) is left.
        for (seq, _) in &r.items {
            j.done(*seq);
        }
        drop(j);
        let (j, r) = Journal::open(&d, opts).unwrap();
        assert!(r.items.is_empty());
        let segs = std::fs::read_dir(&d)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "seg"))
            .count();
        assert!(segs <= 2, "{segs} segments left");
        assert!(j.bytes() < 200, "{}", j.bytes());
        drop(j);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn torn_and_corrupt_records_are_skipped_and_counted() {
        let d = dir("corrupt");
        {
            let (j, _) = Journal::open(&d, JournalOptions::default()).unwrap();
            for seq in 1..=3u64 {
                j.append(seq, &[seq as u8; 100]).unwrap();
            }
        }
        let seg = segment_path(&d, 0);
        let mut data = std::fs::read(&seg).unwrap();
        // Flip a payload byte of the second record, and cut the third short.
        data[HEADER + 100 + HEADER + 5] ^= 0xff;
        data.truncate(data.len() - 30);
        std::fs::write(&seg, &data).unwrap();
        let (j, r) = Journal::open(&d, JournalOptions::default()).unwrap();
        assert_eq!(r.items.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1]);
        assert_eq!(r.skipped_records, 2);
        assert!(r.skipped_bytes > 0);
        // New items go on after the damage.
        j.append(9, b"after").unwrap();
        drop(j);
        let (_, r) = Journal::open(&d, JournalOptions::default()).unwrap();
        assert_eq!(r.items.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1, 9]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_second_owner_is_refused() {
        let d = dir("lock");
        let (_j, _) = Journal::open(&d, JournalOptions::default()).unwrap();
        std::fs::write(d.join("LOCK"), "1").unwrap(); // pid 1 lives
        assert!(
            Journal::open(&d, JournalOptions::default())
                .unwrap_err()
                .to_string()
                .contains("in use")
        );
    }

    #[tokio::test]
    async fn with_fsync_durable_resolves_after_the_group_is_synced() {
        let d = dir("fsync");
        let (j, _) = Journal::open(
            &d,
            JournalOptions {
                fsync: true,
                segment_bytes: 1 << 20,
            },
        )
        .unwrap();
        let mut last = 0;
        for seq in 0..100u64 {
            last = j.append(seq, b"x").unwrap().1;
        }
        tokio::time::timeout(std::time::Duration::from_secs(5), j.durable(last))
            .await
            .unwrap();
        j.close();
        let _ = std::fs::remove_dir_all(&d);
    }

    proptest::proptest! {
        /// Whatever the bytes of a segment, opening it never panics and
        /// accounts for every byte.
        #[test]
        fn any_segment_bytes_open(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let mut items = BTreeMap::new();
            let mut r = Recovery::default();
            scan(&bytes, 0, &mut items, &mut r);
            proptest::prop_assert!(r.skipped_bytes <= bytes.len() as u64);
        }
    }
}
