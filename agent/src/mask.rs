//! Streaming secret masking for step output.
//!
//! Every chunk a step writes to stdout or stderr passes through a [`Masker`] (one per stream)
//! before it leaves the host, so a secret the job was given never reaches the server's logs.
//!
//! # What is masked
//!
//! For every secret value the masker looks for, and replaces with [`REPLACEMENT`]:
//!
//! * the value itself;
//! * for a multi-line value, each of its lines on its own (without a trailing `\r`), because
//!   tools often print a key or certificate line by line, or with `\r\n` line endings;
//! * the value's base64 encoding, in the standard and the URL-safe alphabet, each with and
//!   without padding, because scripts often print a value they are about to put into an
//!   `Authorization` header or a config file;
//! * the value percent-encoded as a URL query component (space as `+`, and space as `%20`),
//!   because a secret passed in a URL shows up that way in `curl -v` output and HTTP logs.
//!
//! Where several patterns match at the same place the longest wins, so a secret that starts
//! with another secret is masked whole.
//!
//! # What is not masked
//!
//! Patterns shorter than [`MIN_SECRET_LEN`] bytes are ignored. The server refuses secrets that
//! short, and a short pattern (a line `}` of a JSON secret, a value like `true` or `1234`) would
//! occur all over ordinary output: masking it would make the log unreadable while hiding
//! nothing, since a value that short cannot be kept secret anyway.
//!
//! # Streaming
//!
//! Output arrives in arbitrary chunks and a secret may be split across any number of them. The
//! masker keeps back only the shortest tail that could still turn into a secret: the longest
//! suffix of what it has seen that is a proper prefix of some pattern. Everything before that
//! tail is masked and emitted at once, so ordinary output, including a prompt without a newline,
//! flows through immediately. The result is the same however the output is split into chunks.
//! Emitted pieces never end inside a UTF-8 character, so each can be turned into text on its
//! own.

use std::borrow::Cow;
use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

/// What every occurrence of a secret is replaced with.
pub const REPLACEMENT: &str = "***";

/// Patterns shorter than this many bytes are not masked (see the module documentation).
pub const MIN_SECRET_LEN: usize = 6;

/// Masks secrets in one output stream, chunk by chunk.
///
/// Feed every chunk to [`Masker::push`] and send what it returns; at the end of the stream send
/// what [`Masker::finish`] returns. Cloning shares the (immutable) patterns and copies the
/// held-back bytes, so a fresh masker can be cloned for a second stream.
#[derive(Clone)]
pub struct Masker {
    mode: Mode,
    /// Bytes received but not yet emitted: at most a possible start of a secret plus an
    /// incomplete UTF-8 character.
    held: Vec<u8>,
}

/// How a [`Masker`] treats its input.
#[derive(Clone)]
enum Mode {
    /// Nothing to mask: input goes out as it comes (only an incomplete trailing UTF-8
    /// character waits for the rest of it).
    PassThrough,
    /// Mask occurrences of the patterns.
    Mask(Arc<Matcher>),
    /// The patterns could not be compiled: withhold all output rather than leak a secret.
    Redact,
}

impl Masker {
    /// A masker for the given secret values (see the module documentation for what is derived
    /// from each one).
    pub fn new(secrets: &[String]) -> Masker {
        let patterns = derive_patterns(secrets);
        let mode = if patterns.is_empty() {
            Mode::PassThrough
        } else {
            match Matcher::new(&patterns) {
                Ok(matcher) => Mode::Mask(Arc::new(matcher)),
                Err(error) => {
                    tracing::error!("cannot compile secret patterns, withholding output: {error}");
                    Mode::Redact
                }
            }
        };
        Masker {
            mode,
            held: Vec::new(),
        }
    }

    /// Whether there is nothing to mask, so output passes through unchanged.
    pub fn is_empty(&self) -> bool {
        matches!(self.mode, Mode::PassThrough)
    }

    /// Takes the next chunk of output and returns what can be emitted now, with secrets masked.
    ///
    /// Holds back only a tail that could be the beginning of a secret (and an incomplete UTF-8
    /// character); it comes out with a later push or with [`Masker::finish`].
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        if let Mode::Redact = self.mode {
            return redacted(chunk);
        }
        let buffer = if self.held.is_empty() {
            Cow::Borrowed(chunk)
        } else {
            let mut joined = std::mem::take(&mut self.held);
            joined.extend_from_slice(chunk);
            Cow::Owned(joined)
        };
        let (output, consumed) = match &self.mode {
            Mode::Mask(matcher) => matcher.mask_prefix(&buffer),
            Mode::PassThrough | Mode::Redact => pass_prefix(&buffer),
        };
        self.held = buffer.get(consumed..).unwrap_or_default().to_vec();
        output
    }

    /// Ends the stream: returns the held-back rest (masked where it holds a complete secret)
    /// and resets the masker for a new stream.
    pub fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.held);
        match &self.mode {
            Mode::Mask(matcher) => matcher.mask_all(&rest),
            Mode::PassThrough | Mode::Redact => rest,
        }
    }

    /// A masker that withholds everything, as when the patterns cannot be compiled.
    #[cfg(test)]
    fn redacting() -> Masker {
        Masker {
            mode: Mode::Redact,
            held: Vec::new(),
        }
    }
}

/// Never shows the secrets, only how much there is.
impl fmt::Debug for Masker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match &self.mode {
            Mode::PassThrough => "pass-through".to_owned(),
            Mode::Mask(matcher) => format!("{} patterns", matcher.automaton.patterns_len()),
            Mode::Redact => "redact".to_owned(),
        };
        f.debug_struct("Masker")
            .field("mode", &mode)
            .field("held_bytes", &self.held.len())
            .finish()
    }
}

/// Masks the secrets in a complete text, e.g. an error message.
pub fn mask_str(secrets: &[String], text: &str) -> String {
    let mut masker = Masker::new(secrets);
    let mut output = masker.push(text.as_bytes());
    output.extend(masker.finish());
    match String::from_utf8(output) {
        Ok(masked) => masked,
        Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
    }
}

/// What a redacting masker emits for a chunk: one replacement for any non-empty chunk.
fn redacted(chunk: &[u8]) -> Vec<u8> {
    if chunk.is_empty() {
        Vec::new()
    } else {
        REPLACEMENT.as_bytes().to_vec()
    }
}

/// Pass-through: everything but an incomplete trailing UTF-8 character, and how much that is.
fn pass_prefix(buffer: &[u8]) -> (Vec<u8>, usize) {
    let end = utf8_boundary(buffer, 0, buffer.len());
    (buffer.get(..end).unwrap_or_default().to_vec(), end)
}

/// All patterns to mask for the given secrets: deduplicated, none shorter than
/// [`MIN_SECRET_LEN`].
fn derive_patterns(secrets: &[String]) -> Vec<Vec<u8>> {
    let patterns: BTreeSet<Vec<u8>> = secrets
        .iter()
        .flat_map(|secret| secret_variants(secret))
        .filter(|pattern| pattern.len() >= MIN_SECRET_LEN)
        .collect();
    patterns.into_iter().collect()
}

/// The forms in which one secret value may show up in output.
fn secret_variants(secret: &str) -> Vec<Vec<u8>> {
    let mut variants = vec![secret.as_bytes().to_vec()];
    variants.extend(line_variants(secret));
    variants.extend(base64_variants(secret.as_bytes()));
    variants.extend(url_variants(secret));
    variants
}

/// The lines of a multi-line value, each without a trailing `\r`; nothing for a single line.
fn line_variants(secret: &str) -> Vec<Vec<u8>> {
    if !secret.contains('\n') {
        return Vec::new();
    }
    secret
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line).as_bytes().to_vec())
        .collect()
}

/// Base64 of the value: standard and URL-safe alphabet, each with and without padding.
fn base64_variants(value: &[u8]) -> Vec<Vec<u8>> {
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .map(|engine| engine.encode(value).into_bytes())
        .collect()
}

/// The value percent-encoded as a URL query component (space as `+` and as `%20`), where that
/// differs from the value.
fn url_variants(secret: &str) -> Vec<Vec<u8>> {
    let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    // `byte_serialize` encodes a literal `+` as `%2B`, so every `+` in its output is a space.
    let percent = form.replace('+', "%20");
    [form, percent]
        .into_iter()
        .filter(|encoded| encoded != secret)
        .map(String::into_bytes)
        .collect()
}

/// The compiled patterns: a matcher for complete occurrences and a trie for partial ones.
struct Matcher {
    /// Finds complete occurrences, leftmost first and longest among those.
    automaton: AhoCorasick,
    /// Finds the longest tail of the buffer that could still become an occurrence.
    prefixes: PrefixTrie,
}

impl Matcher {
    fn new(patterns: &[Vec<u8>]) -> Result<Matcher, aho_corasick::BuildError> {
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(patterns)?;
        Ok(Matcher {
            automaton,
            prefixes: PrefixTrie::new(patterns),
        })
    }

    /// Masks the part of `buffer` that is safe to emit and returns it with its length in
    /// `buffer`; the rest must be kept and prepended to the next chunk.
    ///
    /// Safe means no byte of it can belong to an occurrence that is not complete yet. Any
    /// occurrence that runs past the end of the buffer starts inside the longest suffix that is
    /// a proper prefix of a pattern, so every occurrence starting before that suffix lies
    /// entirely in the buffer, and a match found there is exactly the match a search over the
    /// whole stream would find. A match that does start inside the suffix is not taken yet: an
    /// earlier, longer occurrence may still complete. When a taken match ends inside the
    /// suffix, the next search resumes after it, so the suffix shrinks to the longest one
    /// starting after the match.
    fn mask_prefix(&self, buffer: &[u8]) -> (Vec<u8>, usize) {
        let len = buffer.len();
        let window = len.saturating_sub(self.prefixes.longest.saturating_sub(1));
        let mut node = self.prefixes.open_within(
            self.prefixes.walk(buffer.get(window..).unwrap_or_default()),
            len,
        );
        let mut hold_from = len - self.prefixes.depth(node);
        let mut output = Vec::with_capacity(len);
        let mut done = 0;
        for found in self.automaton.find_iter(buffer) {
            if found.start() >= hold_from {
                break;
            }
            output.extend_from_slice(buffer.get(done..found.start()).unwrap_or_default());
            output.extend_from_slice(REPLACEMENT.as_bytes());
            done = found.end();
            if done > hold_from {
                node = self.prefixes.open_within(node, len - done);
                hold_from = len - self.prefixes.depth(node);
            }
        }
        let end = utf8_boundary(buffer, done, hold_from);
        output.extend_from_slice(buffer.get(done..end).unwrap_or_default());
        (output, end)
    }

    /// Masks every complete occurrence in `text`.
    fn mask_all(&self, text: &[u8]) -> Vec<u8> {
        let mut output = Vec::with_capacity(text.len());
        let mut done = 0;
        for found in self.automaton.find_iter(text) {
            output.extend_from_slice(text.get(done..found.start()).unwrap_or_default());
            output.extend_from_slice(REPLACEMENT.as_bytes());
            done = found.end();
        }
        output.extend_from_slice(text.get(done..).unwrap_or_default());
        output
    }
}

/// The root of a [`PrefixTrie`]: the empty prefix.
const ROOT: usize = 0;

/// All prefixes of all patterns, with Aho-Corasick failure links, to find in time linear in the
/// text the longest suffix of a text that is a proper prefix of some pattern.
struct PrefixTrie {
    nodes: Vec<TrieNode>,
    /// Length of the longest pattern.
    longest: usize,
}

/// One prefix of one or more patterns.
struct TrieNode {
    /// The prefixes one byte longer, sorted by that byte.
    children: Vec<(u8, usize)>,
    /// The longest proper suffix of this prefix that is also in the trie.
    fail: usize,
    /// Length of this prefix.
    depth: usize,
    /// The longest suffix of this prefix (itself included) that is a proper prefix of some
    /// pattern, i.e. the nearest node with children along the failure links.
    open: usize,
}

impl TrieNode {
    fn new(depth: usize) -> TrieNode {
        TrieNode {
            children: Vec::new(),
            fail: ROOT,
            depth,
            open: ROOT,
        }
    }
}

impl PrefixTrie {
    fn new(patterns: &[Vec<u8>]) -> PrefixTrie {
        let mut trie = PrefixTrie {
            nodes: vec![TrieNode::new(0)],
            longest: patterns.iter().map(Vec::len).max().unwrap_or(0),
        };
        for pattern in patterns {
            trie.insert(pattern);
        }
        trie.link();
        trie
    }

    fn insert(&mut self, pattern: &[u8]) {
        let mut node = ROOT;
        for (index, &byte) in pattern.iter().enumerate() {
            node = match self.child(node, byte) {
                Some(next) => next,
                None => self.add_child(node, byte, index + 1),
            };
        }
    }

    fn add_child(&mut self, parent: usize, byte: u8, depth: usize) -> usize {
        let id = self.nodes.len();
        self.nodes.push(TrieNode::new(depth));
        let children = &mut self.nodes[parent].children;
        let position = children.partition_point(|&(existing, _)| existing < byte);
        children.insert(position, (byte, id));
        id
    }

    /// Sets the failure and `open` links, breadth first so shorter prefixes are done first.
    fn link(&mut self) {
        let mut queue = VecDeque::from([ROOT]);
        while let Some(parent) = queue.pop_front() {
            for index in 0..self.nodes[parent].children.len() {
                let (byte, child) = self.nodes[parent].children[index];
                let fail = if parent == ROOT {
                    ROOT
                } else {
                    self.step(self.nodes[parent].fail, byte)
                };
                let open = if self.nodes[child].children.is_empty() {
                    self.nodes[fail].open
                } else {
                    child
                };
                self.nodes[child].fail = fail;
                self.nodes[child].open = open;
                queue.push_back(child);
            }
        }
    }

    fn child(&self, node: usize, byte: u8) -> Option<usize> {
        let children = &self.nodes[node].children;
        children
            .binary_search_by_key(&byte, |&(existing, _)| existing)
            .ok()
            .map(|index| children[index].1)
    }

    /// The longest suffix of (the prefix at `node`, then `byte`) that is in the trie.
    fn step(&self, mut node: usize, byte: u8) -> usize {
        loop {
            if let Some(next) = self.child(node, byte) {
                return next;
            }
            if node == ROOT {
                return ROOT;
            }
            node = self.nodes[node].fail;
        }
    }

    /// The longest suffix of `text` that is in the trie.
    fn walk(&self, text: &[u8]) -> usize {
        text.iter().fold(ROOT, |node, &byte| self.step(node, byte))
    }

    /// The longest suffix of the prefix at `node` that is a proper prefix of some pattern and
    /// at most `limit` bytes long.
    fn open_within(&self, node: usize, limit: usize) -> usize {
        let mut open = self.nodes[node].open;
        while self.nodes[open].depth > limit {
            open = self.nodes[self.nodes[open].fail].open;
        }
        open
    }

    fn depth(&self, node: usize) -> usize {
        self.nodes[node].depth
    }
}

/// `end`, or the start of the UTF-8 character that `end` would cut in two (not before
/// `floor`). Bytes that are not valid UTF-8 are not held back.
fn utf8_boundary(buffer: &[u8], floor: usize, end: usize) -> usize {
    let mut start = end;
    while start > floor && end - start < 4 {
        start -= 1;
        let Some(&byte) = buffer.get(start) else {
            return end;
        };
        if !is_utf8_continuation(byte) {
            return if utf8_width(byte) > end - start {
                start
            } else {
                end
            };
        }
    }
    end
}

fn is_utf8_continuation(byte: u8) -> bool {
    byte & 0b1100_0000 == 0b1000_0000
}

/// Length of the UTF-8 character that starts with `lead` (1 for a byte that cannot start one).
fn utf8_width(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(values: &[&str]) -> Vec<String> {
        values.iter().map(|value| (*value).to_owned()).collect()
    }

    /// Pushes the pieces one after another, then finishes; returns every returned piece.
    fn run_pieces(masker: &mut Masker, pieces: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut outputs: Vec<Vec<u8>> = pieces.iter().map(|piece| masker.push(piece)).collect();
        outputs.push(masker.finish());
        outputs
    }

    fn mask_in_pieces(values: &[&str], pieces: &[&str]) -> String {
        let mut masker = Masker::new(&secrets(values));
        let pieces: Vec<&[u8]> = pieces.iter().map(|piece| piece.as_bytes()).collect();
        let output = run_pieces(&mut masker, &pieces).concat();
        String::from_utf8(output).expect("valid UTF-8")
    }

    fn mask_bytewise(values: &[&str], text: &str) -> String {
        let mut masker = Masker::new(&secrets(values));
        let pieces: Vec<&[u8]> = text.as_bytes().chunks(1).collect();
        let output = run_pieces(&mut masker, &pieces).concat();
        String::from_utf8(output).expect("valid UTF-8")
    }

    /// Leftmost-longest masking by brute force, to check the masker against.
    fn naive_mask(patterns: &[Vec<u8>], text: &[u8]) -> Vec<u8> {
        let mut output = Vec::new();
        let mut position = 0;
        while let Some(rest) = text.get(position..).filter(|rest| !rest.is_empty()) {
            let longest = patterns
                .iter()
                .filter(|pattern| rest.starts_with(pattern))
                .map(Vec::len)
                .max();
            match longest {
                Some(len) => {
                    output.extend_from_slice(REPLACEMENT.as_bytes());
                    position += len;
                }
                None => {
                    output.push(rest[0]);
                    position += 1;
                }
            }
        }
        output
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack
            .windows(needle.len())
            .any(|window| window == needle)
    }

    #[test]
    fn masks_secret_in_middle_of_line() {
        assert_eq!(
            mask_in_pieces(&["hunter22"], &["login with hunter22 now\n"]),
            "login with *** now\n"
        );
    }

    #[test]
    fn masks_every_occurrence() {
        assert_eq!(
            mask_in_pieces(&["hunter22"], &["hunter22 hunter22hunter22\n"]),
            "*** ******\n"
        );
    }

    #[test]
    fn masks_secret_split_across_two_pushes() {
        let mut masker = Masker::new(&secrets(&["hunter22"]));
        assert_eq!(masker.push(b"token: hun"), b"token: ");
        assert_eq!(masker.push(b"ter22 ok\n"), b"*** ok\n");
        assert_eq!(masker.finish(), b"");
    }

    #[test]
    fn masks_secret_pushed_one_byte_at_a_time() {
        assert_eq!(
            mask_bytewise(&["hunter22"], "a hunter22 b hunter2 c hunter22"),
            "a *** b hunter2 c ***"
        );
    }

    #[test]
    fn masks_adjacent_different_secrets() {
        let values = ["hunter22", "swordfish"];
        let text = "[hunter22swordfish][swordfishhunter22]";
        let expected = "[******][******]";
        assert_eq!(mask_in_pieces(&values, &[text]), expected);
        assert_eq!(mask_bytewise(&values, text), expected);
    }

    #[test]
    fn longest_secret_wins_when_one_is_a_prefix_of_another() {
        let values = ["hunter22", "hunter22-extended"];
        let text = "a hunter22-extended b hunter22-ext c";
        let expected = "a *** b ***-ext c";
        assert_eq!(mask_in_pieces(&values, &[text]), expected);
        assert_eq!(mask_bytewise(&values, text), expected);

        let mut masker = Masker::new(&secrets(&values));
        // Complete, but could still grow into the longer secret: held back.
        assert_eq!(masker.push(b"x hunter22"), b"x ");
        assert_eq!(masker.push(b"-extended!"), b"***!");
    }

    #[test]
    fn longer_match_starting_earlier_than_the_held_back_suffix() {
        // After "0123456789abcdefgh", "abcdefgh" is complete, but the earlier-starting
        // "0123456789abcdefghij" may still complete; nothing of it may be emitted yet.
        let values = ["0123456789abcdefghij", "abcdefgh"];
        let mut masker = Masker::new(&secrets(&values));
        assert_eq!(masker.push(b"> 0123456789abcdefgh"), b"> ");
        assert_eq!(masker.push(b"ij <"), b"*** <");

        let mut masker = Masker::new(&secrets(&values));
        assert_eq!(masker.push(b"> 0123456789abcdefgh"), b"> ");
        assert_eq!(masker.push(b"!"), b"0123456789***!");

        let mut masker = Masker::new(&secrets(&values));
        assert_eq!(masker.push(b"> 0123456789abcdefgh"), b"> ");
        assert_eq!(masker.finish(), b"0123456789***");
    }

    #[test]
    fn match_ending_inside_the_held_back_suffix() {
        // "abcdefgh" is complete and starts first; "ghijkl" overlaps it and must not be
        // matched from the middle of an occurrence already masked.
        let values = ["abcdefgh", "ghijkl"];
        let mut masker = Masker::new(&secrets(&values));
        assert_eq!(masker.push(b"abcdefghij"), b"***ij");
        assert_eq!(masker.push(b"kl"), b"kl");
        assert_eq!(masker.finish(), b"");
        assert_eq!(mask_bytewise(&values, "abcdefghijkl"), "***ijkl");
    }

    #[test]
    fn masks_multi_line_secret_whole_line_by_line_and_with_crlf() {
        let key = "-----BEGIN KEY-----\nAAAAbbbbCCCC\nddddEEEE\n-----END KEY-----";
        let values = [key];
        assert_eq!(
            mask_in_pieces(&values, &[&format!("key:\n{key}\ndone\n")]),
            "key:\n***\ndone\n"
        );
        assert_eq!(
            mask_in_pieces(
                &values,
                &[
                    "-----BEGIN KEY-----\n",
                    "AAAAbbbbCCCC\n",
                    "ddddEEEE\n",
                    "x\n"
                ]
            ),
            "***\n***\n***\nx\n"
        );
        let crlf = key.replace('\n', "\r\n");
        assert_eq!(
            mask_bytewise(&values, &format!("{crlf}\r\n")),
            "***\r\n***\r\n***\r\n***\r\n"
        );
    }

    #[test]
    fn multi_line_secret_with_crlf_is_masked_line_by_line() {
        let values = ["first-line\r\nsecond-line"];
        assert_eq!(
            mask_in_pieces(&values, &["first-line\nsecond-line\n"]),
            "***\n***\n"
        );
        assert_eq!(
            mask_in_pieces(&values, &["first-line\r\nsecond-line"]),
            "***"
        );
    }

    #[test]
    fn short_lines_of_a_multi_line_secret_are_not_masked() {
        let values = ["{\n  \"token\": \"abcdefgh\"\n}"];
        assert_eq!(
            mask_in_pieces(&values, &["{\n  \"token\": \"abcdefgh\"\n}\n"]),
            "***\n"
        );
        assert_eq!(
            mask_in_pieces(
                &values,
                &["{\n  \"token\": \"abcdefgh\"\n", "  \"more\": 1\n}\n"]
            ),
            "{\n***\n  \"more\": 1\n}\n"
        );
    }

    #[test]
    fn masks_all_four_base64_forms() {
        let values = ["se~crét?>>"];
        for encoded in [
            "c2V+Y3LDqXQ/Pj4=",
            "c2V+Y3LDqXQ/Pj4",
            "c2V-Y3LDqXQ_Pj4=",
            "c2V-Y3LDqXQ_Pj4",
        ] {
            let text = format!("Authorization: Basic {encoded}\n");
            assert_eq!(
                mask_in_pieces(&values, &[&text]),
                "Authorization: Basic ***\n",
                "{encoded}"
            );
            assert_eq!(
                mask_bytewise(&values, &text),
                "Authorization: Basic ***\n",
                "{encoded}"
            );
        }
    }

    #[test]
    fn masks_url_encoded_forms() {
        let values = ["p@ss word&x=y ok"];
        let text = "GET /?a=p%40ss+word%26x%3Dy+ok&b=p%40ss%20word%26x%3Dy%20ok&c=p@ss word&x=y ok";
        let expected = "GET /?a=***&b=***&c=***";
        assert_eq!(mask_in_pieces(&values, &[text]), expected);
        assert_eq!(mask_bytewise(&values, text), expected);
    }

    #[test]
    fn derives_the_documented_patterns() {
        let patterns = derive_patterns(&secrets(&["p@ss word&x=y ok", "p@ss word&x=y ok"]));
        let expected: BTreeSet<Vec<u8>> = [
            "p@ss word&x=y ok",
            "p%40ss+word%26x%3Dy+ok",
            "p%40ss%20word%26x%3Dy%20ok",
            "cEBzcyB3b3JkJng9eSBvaw==",
            "cEBzcyB3b3JkJng9eSBvaw",
        ]
        .iter()
        .map(|pattern| pattern.as_bytes().to_vec())
        .collect();
        assert_eq!(patterns, expected.into_iter().collect::<Vec<_>>());
        // An already URL-safe value adds no URL-encoded duplicate.
        assert_eq!(derive_patterns(&secrets(&["abc-123_XYZ"])).len(), 3);
    }

    #[test]
    fn ignores_secrets_shorter_than_the_minimum() {
        let masker = Masker::new(&secrets(&["abc", ""]));
        assert!(masker.is_empty());
        assert_eq!(
            mask_in_pieces(&["abc", "abcdef"], &["abc abcde abcdef\n"]),
            "abc abcde ***\n"
        );
        assert_eq!(mask_str(&secrets(&["12345"]), "pin 12345"), "pin 12345");
    }

    #[test]
    fn no_secrets_passes_through_unchanged() {
        let mut masker = Masker::new(&[]);
        assert!(masker.is_empty());
        for chunk in [
            &b"hello "[..],
            b"wor",
            b"ld\n",
            b"",
            b"caf\xc3\xa9 \xe2\x9c\x93\n",
        ] {
            assert_eq!(masker.push(chunk), chunk);
        }
        assert_eq!(masker.finish(), b"");
        // Invalid UTF-8 is passed on as it is.
        assert_eq!(masker.push(b"\xff\xfe\x80x"), b"\xff\xfe\x80x");
        assert_eq!(masker.finish(), b"");
    }

    #[test]
    fn no_secrets_still_keeps_utf8_characters_whole() {
        let mut masker = Masker::new(&[]);
        assert_eq!(masker.push(b"caf\xc3"), b"caf");
        assert_eq!(masker.push(b"\xa9!"), "é!".as_bytes());
        assert_eq!(masker.push(b"\xe2\x9c"), b"");
        assert_eq!(masker.finish(), b"\xe2\x9c");
    }

    #[test]
    fn prompt_without_newline_flows_immediately() {
        let mut masker = Masker::new(&secrets(&["hunter22"]));
        assert!(!masker.is_empty());
        assert_eq!(masker.push(b"Password: "), b"Password: ");
        assert_eq!(masker.push(b"Continue? [y/N] "), b"Continue? [y/N] ");
        assert_eq!(masker.finish(), b"");
    }

    #[test]
    fn held_back_prefix_that_is_not_a_secret_is_emitted_unchanged() {
        let mut masker = Masker::new(&secrets(&["hunter22"]));
        assert_eq!(masker.push(b"we went hunt"), b"we went ");
        assert_eq!(masker.push(b"ing\n"), b"hunting\n");

        assert_eq!(masker.push(b"the hunte"), b"the ");
        assert_eq!(masker.finish(), b"hunte");
        // Finished maskers start over.
        assert_eq!(masker.push(b"ter22"), b"ter22");
        assert_eq!(masker.finish(), b"");
    }

    #[test]
    fn finish_masks_a_complete_secret_held_behind_a_longer_candidate() {
        let mut masker = Masker::new(&secrets(&["xxabcdefZZ", "abcdef"]));
        assert_eq!(masker.push(b"xxabcdef"), b"");
        assert_eq!(masker.finish(), b"xx***");
    }

    #[test]
    fn masks_secret_with_multi_byte_characters() {
        let values = ["pässwörd-é"];
        let text = "é: pässwörd-é, ü";
        let expected = "é: ***, ü";
        assert_eq!(mask_in_pieces(&values, &[text]), expected);
        assert_eq!(mask_bytewise(&values, text), expected);
        assert_eq!(mask_bytewise(&values, "pässwörd-"), "pässwörd-");
    }

    #[test]
    fn pieces_never_split_a_utf8_character() {
        let values = ["élan-vital-42"];
        let text = "→ ✓ élan-vital-4 😀 élan-vital-42 ✓é→";
        let expected = "→ ✓ élan-vital-4 😀 *** ✓é→";
        let bytes = text.as_bytes();
        for split in 0..bytes.len() {
            let (head, tail) = bytes.split_at(split);
            let mut masker = Masker::new(&secrets(&values));
            let pieces = run_pieces(&mut masker, &[head, tail]);
            for piece in &pieces {
                assert!(
                    std::str::from_utf8(piece).is_ok(),
                    "split {split}: {piece:?}"
                );
            }
            assert_eq!(pieces.concat(), expected.as_bytes(), "split {split}");
        }
        let mut masker = Masker::new(&secrets(&values));
        let pieces: Vec<&[u8]> = bytes.chunks(1).collect();
        let pieces = run_pieces(&mut masker, &pieces);
        assert!(
            pieces
                .iter()
                .all(|piece| std::str::from_utf8(piece).is_ok())
        );
        assert_eq!(pieces.concat(), expected.as_bytes());
    }

    #[test]
    fn invalid_utf8_is_not_held_back_forever() {
        let mut masker = Masker::new(&secrets(&["hunter22"]));
        assert_eq!(masker.push(b"a\xe2"), b"a");
        assert_eq!(masker.push(b"b\xff"), b"\xe2b\xff");
        assert_eq!(masker.push(b"\xf0\x9f"), b"");
        assert_eq!(masker.finish(), b"\xf0\x9f");
    }

    #[test]
    fn held_back_bytes_stay_shorter_than_the_longest_pattern() {
        let values = ["hunter22", "swordfish-and-chips"];
        let mut masker = Masker::new(&secrets(&values));
        let longest = derive_patterns(&secrets(&values))
            .iter()
            .map(Vec::len)
            .max()
            .unwrap_or(0);
        let chunk = "swordfish-and-chip hunter2 ".repeat(4000) + "swordfish-and-chi";
        let mut output = Vec::new();
        for _ in 0..50 {
            output.extend(masker.push(chunk.as_bytes()));
            assert!(masker.held.len() < longest);
        }
        output.extend(masker.finish());
        assert_eq!(output, chunk.repeat(50).into_bytes());
    }

    #[test]
    fn mask_str_masks_a_whole_text() {
        let values = secrets(&["hunter22", "swordfish"]);
        assert_eq!(
            mask_str(&values, "auth failed for hunter22:swordfish"),
            "auth failed for ***:***"
        );
        assert_eq!(mask_str(&values, "hunter2"), "hunter2");
        assert_eq!(mask_str(&[], "nothing to hide"), "nothing to hide");
    }

    #[test]
    fn clones_are_independent_and_debug_does_not_show_secrets() {
        let mut stdout = Masker::new(&secrets(&["hunter22"]));
        let mut stderr = stdout.clone();
        assert_eq!(stdout.push(b"hunt"), b"");
        assert_eq!(stderr.push(b"er22"), b"er22");
        assert_eq!(stdout.push(b"er22"), b"***");
        let debug = format!("{stdout:?}");
        assert!(!debug.contains("hunter22"), "{debug}");
        assert!(debug.contains("patterns"), "{debug}");
    }

    #[test]
    fn redacting_masker_withholds_everything() {
        let mut masker = Masker::redacting();
        assert!(!masker.is_empty());
        assert_eq!(masker.push(b"hunter22"), REPLACEMENT.as_bytes());
        assert_eq!(masker.push(b""), b"");
        assert_eq!(masker.finish(), b"");
    }

    /// A small deterministic pseudo-random generator (64-bit LCG).
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 33
        }

        fn below(&mut self, bound: usize) -> usize {
            usize::try_from(self.next()).unwrap_or(0) % bound.max(1)
        }
    }

    /// Output with secrets, their encodings, fragments of them and multi-byte characters.
    fn random_output(rng: &mut Lcg, patterns: &[Vec<u8>], len: usize) -> Vec<u8> {
        let noise = [
            "a", "b", "x", " ", "\n", "\r\n", "=", "é", "✓", "😀", "***", "hunt",
        ];
        let mut output = Vec::new();
        while output.len() < len {
            let pattern = &patterns[rng.below(patterns.len())];
            match rng.below(6) {
                0 => output.extend_from_slice(pattern),
                1 => {
                    // A fragment, cut at a character boundary to keep the text valid UTF-8.
                    let mut cut = rng.below(pattern.len());
                    while cut > 0 && is_utf8_continuation(pattern[cut]) {
                        cut -= 1;
                    }
                    output.extend_from_slice(&pattern[..cut]);
                }
                _ => output.extend_from_slice(noise[rng.below(noise.len())].as_bytes()),
            }
        }
        output
    }

    fn random_pieces<'a>(rng: &mut Lcg, text: &'a [u8], max_piece: usize) -> Vec<&'a [u8]> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let (piece, tail) = rest.split_at(rng.below(max_piece + 1).min(rest.len()));
            pieces.push(piece);
            rest = tail;
        }
        pieces
    }

    #[test]
    fn chunking_never_changes_the_result() {
        let values = secrets(&[
            "hunter22",
            "hunter22-extended",
            "22-extra-secret",
            "tokén-🔑-abc",
            "line-one\r\nline-two\nline3",
            "a b&c=d+e/f",
            "aaaaaaab",
        ]);
        let patterns = derive_patterns(&values);
        for seed in [1_u64, 7, 42, 1234, 99_991] {
            let mut rng = Lcg(seed);
            let text = random_output(&mut rng, &patterns, 4000);
            let expected = naive_mask(&patterns, &text);
            for pattern in &patterns {
                assert!(!contains(&expected, pattern), "seed {seed}");
            }

            let mut whole = Masker::new(&values);
            assert_eq!(run_pieces(&mut whole, &[&text]).concat(), expected);

            let mut bytewise = Masker::new(&values);
            let bytes: Vec<&[u8]> = text.chunks(1).collect();
            assert_eq!(run_pieces(&mut bytewise, &bytes).concat(), expected);

            for max_piece in [3, 17, 64] {
                let mut masker = Masker::new(&values);
                let pieces = random_pieces(&mut rng, &text, max_piece);
                let outputs = run_pieces(&mut masker, &pieces);
                for output in &outputs {
                    assert!(std::str::from_utf8(output).is_ok(), "seed {seed}");
                }
                assert_eq!(
                    outputs.concat(),
                    expected,
                    "seed {seed}, pieces {max_piece}"
                );
            }
        }
    }

    #[test]
    #[ignore = "throughput check; run with --release -- --ignored"]
    fn masks_200_megabytes() {
        let values = secrets(&["hunter22", "-----BEGIN KEY-----\nAAAAbbbbCCCC\nddddEEEE"]);
        let mut masker = Masker::new(&values);
        let line = "compiling crate hunter2 with flags -O3 … ok hunter22\n".repeat(1000);
        let started = std::time::Instant::now();
        let mut total = 0;
        let mut masked = 0;
        while total < 200 * 1024 * 1024 {
            for chunk in line.as_bytes().chunks(8192) {
                total += chunk.len();
                masked += masker.push(chunk).len();
            }
        }
        masked += masker.finish().len();
        println!("{total} bytes in, {masked} out, {:?}", started.elapsed());
        assert!(masked < total);
    }
}
