//! Job events waiting for the server's acknowledgement.
//!
//! Every event of an execution gets the next sequence number and stays here until the server
//! acknowledges it, across any number of reconnects: after a reconnect everything not yet
//! acknowledged is sent again (the server ignores sequences it already stored). Memory is
//! bounded: past `memory_limit` bytes, newer events of an execution go to a spool file in the
//! state directory, and come back into memory, in order, as acknowledgements free room.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use cygnet_proto::v1 as pb;
use prost::Message;
use tokio::sync::Notify;

/// Events spooled to disk for one execution, oldest first from `read_offset`.
struct Spool {
    path: PathBuf,
    writer: File,
    read_offset: u64,
    count: usize,
}

impl Spool {
    fn create(path: PathBuf) -> std::io::Result<Self> {
        let mut options = OpenOptions::new();
        options.create(true).truncate(true).read(true).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        Ok(Self {
            writer: options.open(&path)?,
            path,
            read_offset: 0,
            count: 0,
        })
    }

    fn append(&mut self, event: &pb::JobEvent) -> std::io::Result<()> {
        self.writer
            .write_all(&event.encode_length_delimited_to_vec())?;
        self.count += 1;
        Ok(())
    }

    /// Reads up to `budget` bytes of the oldest spooled events.
    fn take(&mut self, budget: usize) -> std::io::Result<Vec<pb::JobEvent>> {
        let mut file = File::open(&self.path)?;
        file.seek(SeekFrom::Start(self.read_offset))?;
        let mut reader = BufReader::new(file);
        let mut events = Vec::new();
        let mut used = 0;
        while self.count > 0 && (events.is_empty() || used < budget) {
            let mut length_bytes = Vec::with_capacity(10);
            loop {
                let mut byte = [0u8; 1];
                reader.read_exact(&mut byte)?;
                length_bytes.push(byte[0]);
                if byte[0] & 0x80 == 0 {
                    break;
                }
            }
            let length = prost::decode_length_delimiter(length_bytes.as_slice())
                .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidData, error))?;
            let mut body = vec![0u8; length];
            reader.read_exact(&mut body)?;
            let event = pb::JobEvent::decode(body.as_slice())
                .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidData, error))?;
            self.read_offset += (length_bytes.len() + length) as u64;
            self.count -= 1;
            used += length;
            events.push(event);
        }
        Ok(events)
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[derive(Default)]
struct Queue {
    next_sequence: i64,
    /// Unacknowledged events in memory, oldest first.
    events: VecDeque<pb::JobEvent>,
    /// Newer unacknowledged events on disk (always after everything in `events`).
    spool: Option<Spool>,
    /// Highest sequence sent on the current stream.
    sent: i64,
    /// Highest sequence the server acknowledged.
    acknowledged: i64,
    /// The job emitted its last event.
    finished: bool,
}

/// Sequenced, acknowledged job events of every execution on this agent.
pub struct Outbox {
    queues: Mutex<BTreeMap<i64, Queue>>,
    memory: Mutex<usize>,
    memory_limit: usize,
    spool_directory: PathBuf,
    /// Woken when there is something new to send.
    pub changed: Notify,
}

/// Bytes of events handed to the stream and not acknowledged, at most.
pub const IN_FLIGHT_BYTES: usize = 4 << 20;

fn size_of(event: &pb::JobEvent) -> usize {
    event.encoded_len()
}

impl Outbox {
    pub fn new(spool_directory: &Path, memory_limit: usize) -> Self {
        Self {
            queues: Mutex::new(BTreeMap::new()),
            memory: Mutex::new(0),
            memory_limit,
            spool_directory: spool_directory.to_path_buf(),
            changed: Notify::new(),
        }
    }

    fn queues(&self) -> std::sync::MutexGuard<'_, BTreeMap<i64, Queue>> {
        self.queues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, usize> {
        self.memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds the next event of an execution; returns its sequence number.
    pub fn push(&self, execution_id: i64, event: pb::job_event::Event) -> i64 {
        let mut queues = self.queues();
        let queue = queues.entry(execution_id).or_default();
        queue.next_sequence += 1;
        let sequence = queue.next_sequence;
        let finished = matches!(
            event,
            pb::job_event::Event::Finished(_) | pb::job_event::Event::Rejected(_)
        );
        let now = chrono::Utc::now();
        let event = pb::JobEvent {
            execution_id,
            sequence,
            occurred_at: Some(prost_types::Timestamp {
                seconds: now.timestamp(),
                nanos: now.timestamp_subsec_nanos() as i32,
            }),
            event: Some(event),
        };
        queue.finished |= finished;
        let size = size_of(&event);
        let mut memory = self.memory();
        if queue.spool.is_none() && *memory + size <= self.memory_limit {
            *memory += size;
            queue.events.push_back(event);
        } else {
            if queue.spool.is_none() {
                let path = self
                    .spool_directory
                    .join(format!("execution-{execution_id}.spool"));
                match Spool::create(path) {
                    Ok(spool) => queue.spool = Some(spool),
                    Err(error) => {
                        // No disk: keep it in memory rather than lose it.
                        tracing::warn!(%error, "cannot spool job events to disk; keeping them in memory");
                        *memory += size;
                        queue.events.push_back(event);
                        drop(memory);
                        drop(queues);
                        self.changed.notify_one();
                        return sequence;
                    }
                }
            }
            if let Some(spool) = &mut queue.spool
                && let Err(error) = spool.append(&event)
            {
                tracing::warn!(%error, "cannot spool a job event; keeping it in memory");
                *memory += size;
                queue.events.push_back(event);
            }
        }
        drop(memory);
        drop(queues);
        self.changed.notify_one();
        sequence
    }

    /// Events not yet sent on the current stream, per execution in order, as many as fit in
    /// [`IN_FLIGHT_BYTES`] beside those sent and not acknowledged yet (always one when none is in
    /// flight). Each acknowledgement makes room, and wakes `changed`; so a fast job's output is
    /// never copied into the stream's buffers all at once.
    pub fn take_unsent(&self) -> Vec<pb::JobEvent> {
        let mut queues = self.queues();
        let mut in_flight: usize = queues
            .values()
            .flat_map(|queue| {
                queue.events.iter().filter(|event| {
                    event.sequence > queue.acknowledged && event.sequence <= queue.sent
                })
            })
            .map(size_of)
            .sum();
        let mut unsent = Vec::new();
        for queue in queues.values_mut() {
            for event in &queue.events {
                if event.sequence <= queue.sent {
                    continue;
                }
                let size = size_of(event);
                if in_flight > 0 && in_flight + size > IN_FLIGHT_BYTES {
                    return unsent;
                }
                in_flight += size;
                queue.sent = event.sequence;
                unsent.push(event.clone());
            }
        }
        unsent
    }

    /// The server stored everything of `execution_id` up to `sequence`.
    pub fn acknowledge(&self, execution_id: i64, sequence: i64) {
        let mut queues = self.queues();
        let Some(queue) = queues.get_mut(&execution_id) else {
            return;
        };
        queue.acknowledged = queue.acknowledged.max(sequence);
        let mut memory = self.memory();
        while queue
            .events
            .front()
            .is_some_and(|event| event.sequence <= queue.acknowledged)
        {
            if let Some(event) = queue.events.pop_front() {
                *memory = memory.saturating_sub(size_of(&event));
            }
        }
        // Room again: bring spooled events back, oldest first.
        if let Some(spool) = &mut queue.spool
            && *memory < self.memory_limit / 2
        {
            match spool.take(self.memory_limit / 2) {
                Ok(events) => {
                    for event in events {
                        *memory += size_of(&event);
                        queue.events.push_back(event);
                    }
                }
                Err(error) => {
                    tracing::error!(%error, execution_id, "cannot read spooled job events")
                }
            }
            if spool.count == 0 {
                queue.spool = None;
            }
        }
        let done = queue.finished
            && queue.events.is_empty()
            && queue.spool.is_none()
            && queue.acknowledged >= queue.next_sequence;
        if done {
            queues.remove(&execution_id);
        }
        drop(memory);
        self.changed.notify_one();
    }

    /// A new stream: everything not acknowledged must be sent again.
    pub fn rewind(&self) {
        for queue in self.queues().values_mut() {
            queue.sent = queue.acknowledged;
        }
        self.changed.notify_one();
    }

    /// Executions with events the server has not acknowledged yet.
    pub fn pending_executions(&self) -> Vec<i64> {
        self.queues().keys().copied().collect()
    }

    /// Whether an execution ever had events here (it ran, or runs, on this agent).
    pub fn knows(&self, execution_id: i64) -> bool {
        self.queues().contains_key(&execution_id)
    }

    /// Bytes of unacknowledged events held in memory.
    pub fn memory_bytes(&self) -> usize {
        *self.memory()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(text: &str) -> pb::job_event::Event {
        pb::job_event::Event::Log(pb::LogOutput {
            step_index: 0,
            stream: pb::LogStream::Stdout.into(),
            text: text.into(),
        })
    }

    fn sequences(events: &[pb::JobEvent]) -> Vec<i64> {
        events.iter().map(|event| event.sequence).collect()
    }

    #[test]
    fn events_are_numbered_resent_until_acknowledged_and_forgotten_after() {
        let dir = tempfile::tempdir().expect("temp dir");
        let outbox = Outbox::new(dir.path(), 1 << 20);
        assert_eq!(outbox.push(7, log("a")), 1);
        assert_eq!(outbox.push(7, log("b")), 2);
        assert_eq!(sequences(&outbox.take_unsent()), [1, 2]);
        assert!(outbox.take_unsent().is_empty(), "sent once per stream");
        outbox.acknowledge(7, 1);
        outbox.rewind();
        assert_eq!(
            sequences(&outbox.take_unsent()),
            [2],
            "only the unacknowledged again"
        );
        outbox.push(
            7,
            pb::job_event::Event::Finished(pb::JobFinished::default()),
        );
        assert_eq!(outbox.pending_executions(), [7]);
        outbox.acknowledge(7, 3);
        assert!(outbox.pending_executions().is_empty());
        assert_eq!(outbox.memory_bytes(), 0);
    }

    #[test]
    fn at_most_a_window_of_events_is_in_flight() {
        let dir = tempfile::tempdir().expect("temp dir");
        let outbox = Outbox::new(dir.path(), 64 << 20);
        let text = "x".repeat(IN_FLIGHT_BYTES * 3 / 10);
        for _ in 0..5 {
            outbox.push(7, log(&text));
        }
        // Three of 0.3 windows fit, a fourth would not.
        assert_eq!(sequences(&outbox.take_unsent()), [1, 2, 3]);
        assert!(outbox.take_unsent().is_empty(), "the window is full");
        outbox.acknowledge(7, 2);
        assert_eq!(sequences(&outbox.take_unsent()), [4, 5]);
        // One event larger than the window still goes when nothing is in flight.
        outbox.acknowledge(7, 5);
        outbox.push(7, log(&"y".repeat(IN_FLIGHT_BYTES * 3 / 2)));
        assert_eq!(sequences(&outbox.take_unsent()), [6]);
    }

    #[test]
    fn past_the_memory_limit_events_spool_to_disk_in_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let outbox = Outbox::new(dir.path(), 200);
        let text = "x".repeat(50);
        for _ in 0..20 {
            outbox.push(1, log(&text));
        }
        assert!(outbox.memory_bytes() <= 200);
        assert!(dir.path().join("execution-1.spool").exists());
        let mut seen = Vec::new();
        loop {
            let unsent = outbox.take_unsent();
            if unsent.is_empty() {
                break;
            }
            let last = unsent
                .last()
                .map(|event| event.sequence)
                .unwrap_or_default();
            seen.extend(sequences(&unsent));
            outbox.acknowledge(1, last);
        }
        assert_eq!(
            seen,
            (1..=20).collect::<Vec<_>>(),
            "every event once, in order"
        );
        assert!(!dir.path().join("execution-1.spool").exists());
    }
}
