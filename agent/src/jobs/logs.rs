//! Turns a step's output into log events: batched (not one message per line), cut at line ends
//! when possible, valid UTF-8 (a character split across reads is kept whole), and capped per job
//! with a visible marker.

use std::sync::Arc;

use cygnet_proto::v1 as pb;

use super::outbox::Outbox;

/// Largest text of one log event.
pub const MAX_CHUNK_BYTES: usize = 64 * 1024;

/// Pending output of one stream of one step.
#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
}

/// Collects a job's output and emits it into the outbox.
pub struct LogSink {
    outbox: Arc<Outbox>,
    execution_id: i64,
    step_index: i32,
    stdout: Pending,
    stderr: Pending,
    /// Bytes of output this job may still log.
    remaining: u64,
    truncated: bool,
    cap: u64,
}

impl LogSink {
    pub fn new(outbox: Arc<Outbox>, execution_id: i64, cap: u64) -> Self {
        Self {
            outbox,
            execution_id,
            step_index: -1,
            stdout: Pending::default(),
            stderr: Pending::default(),
            remaining: cap,
            truncated: false,
            cap,
        }
    }

    /// Output from now on belongs to this step.
    pub fn set_step(&mut self, step_index: i32) {
        self.flush();
        self.step_index = step_index;
    }

    fn emit(&self, stream: pb::LogStream, text: String) {
        if text.is_empty() {
            return;
        }
        self.outbox.push(
            self.execution_id,
            pb::job_event::Event::Log(pb::LogOutput {
                step_index: self.step_index,
                stream: stream.into(),
                text,
            }),
        );
    }

    /// An agent message in the log (outside the cap).
    pub fn system(&self, text: impl Into<String>) {
        let mut text = text.into();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        self.emit(pb::LogStream::System, text);
    }

    fn pending_mut(&mut self, stream: pb::LogStream) -> &mut Pending {
        match stream {
            pb::LogStream::Stderr => &mut self.stderr,
            _ => &mut self.stdout,
        }
    }

    /// Adds output bytes of a stream, emitting full chunks.
    pub fn write(&mut self, stream: pb::LogStream, data: &[u8]) {
        if self.truncated {
            return;
        }
        let allowed = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(data.len());
        self.remaining -= allowed as u64;
        let mut ready = Vec::new();
        let pending = self.pending_mut(stream);
        pending.bytes.extend_from_slice(&data[..allowed]);
        while pending.bytes.len() >= MAX_CHUNK_BYTES {
            let cut = pending.bytes[..MAX_CHUNK_BYTES]
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(MAX_CHUNK_BYTES, |newline| newline + 1);
            let rest = pending.bytes.split_off(cut);
            let chunk = std::mem::replace(&mut pending.bytes, rest);
            let (text, mut carry) = decode(chunk);
            carry.extend_from_slice(&pending.bytes);
            pending.bytes = carry;
            ready.push(text);
        }
        for text in ready {
            self.emit(stream, text);
        }
        if allowed < data.len() {
            self.flush();
            self.truncated = true;
            self.system(format!(
                "[log truncated: this job reached the {} byte log limit; further output is dropped]",
                self.cap
            ));
        }
    }

    /// Emits everything pending (called on a timer and at step ends). An incomplete character at
    /// the very end waits for its remaining bytes.
    pub fn flush(&mut self) {
        for stream in [pb::LogStream::Stdout, pb::LogStream::Stderr] {
            let pending = self.pending_mut(stream);
            if pending.bytes.is_empty() {
                continue;
            }
            let (text, carry) = decode(std::mem::take(&mut pending.bytes));
            pending.bytes = carry;
            self.emit(stream, text);
        }
    }

    /// Ends the step: flushes everything, incomplete characters included (replaced).
    pub fn finish_step(&mut self) {
        self.flush();
        for stream in [pb::LogStream::Stdout, pb::LogStream::Stderr] {
            let rest = std::mem::take(&mut self.pending_mut(stream).bytes);
            self.emit(stream, String::from_utf8_lossy(&rest).into_owned());
        }
    }
}

/// Decodes bytes as UTF-8, replacing invalid sequences, and returns an incomplete character at
/// the end separately (it may be completed by the next read).
fn decode(bytes: Vec<u8>) -> (String, Vec<u8>) {
    let mut split = bytes.len();
    // The last leading byte within the final three bytes may start an unfinished character.
    for start in (bytes.len().saturating_sub(3)..bytes.len()).rev() {
        if bytes[start] >= 0xC0 {
            if let Err(error) = std::str::from_utf8(&bytes[start..])
                && error.error_len().is_none()
            {
                split = start;
            }
            break;
        }
    }
    (
        String::from_utf8_lossy(&bytes[..split]).into_owned(),
        bytes[split..].to_vec(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(outbox: &Outbox) -> Vec<String> {
        outbox
            .take_unsent()
            .into_iter()
            .filter_map(|event| match event.event {
                Some(pb::job_event::Event::Log(log)) => Some(log.text),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn output_is_batched_and_characters_are_kept_whole() {
        let dir = tempfile::tempdir().expect("temp dir");
        let outbox = Arc::new(Outbox::new(dir.path(), 1 << 20));
        let mut sink = LogSink::new(outbox.clone(), 1, 1 << 20);
        sink.set_step(0);
        let euro = "€".as_bytes();
        sink.write(pb::LogStream::Stdout, b"line one\nline two\n");
        sink.write(pb::LogStream::Stdout, &euro[..1]);
        sink.flush();
        sink.write(pb::LogStream::Stdout, &euro[1..]);
        sink.write(pb::LogStream::Stdout, b"\n\xff binary\n");
        sink.finish_step();
        let all: String = texts(&outbox).concat();
        assert_eq!(all, "line one\nline two\n€\n\u{fffd} binary\n");
    }

    #[test]
    fn long_output_is_cut_into_chunks_at_line_ends() {
        let dir = tempfile::tempdir().expect("temp dir");
        let outbox = Arc::new(Outbox::new(dir.path(), 64 << 20));
        let mut sink = LogSink::new(outbox.clone(), 1, 64 << 20);
        let line = format!("{}\n", "y".repeat(999));
        for _ in 0..200 {
            sink.write(pb::LogStream::Stdout, line.as_bytes());
        }
        sink.finish_step();
        let chunks = texts(&outbox);
        assert!(chunks.len() >= 3, "{}", chunks.len());
        assert!(
            chunks
                .iter()
                .all(|chunk| chunk.len() <= MAX_CHUNK_BYTES && chunk.ends_with('\n'))
        );
        assert_eq!(chunks.concat(), line.repeat(200));
        // A single line longer than a chunk is split without losing bytes.
        let mut sink = LogSink::new(outbox.clone(), 2, 64 << 20);
        let long = "z".repeat(MAX_CHUNK_BYTES * 2 + 10);
        sink.write(pb::LogStream::Stderr, long.as_bytes());
        sink.finish_step();
        assert_eq!(texts(&outbox).concat(), long);
    }

    #[test]
    fn the_cap_truncates_with_a_marker() {
        let dir = tempfile::tempdir().expect("temp dir");
        let outbox = Arc::new(Outbox::new(dir.path(), 1 << 20));
        let mut sink = LogSink::new(outbox.clone(), 1, 10);
        sink.write(pb::LogStream::Stdout, b"0123456789abcdef");
        sink.write(pb::LogStream::Stdout, b"more");
        sink.finish_step();
        let all = texts(&outbox).concat();
        assert!(all.starts_with("0123456789"), "{all}");
        assert!(all.contains("[log truncated"), "{all}");
        assert!(!all.contains("abcdef") && !all.contains("more"), "{all}");
    }
}
