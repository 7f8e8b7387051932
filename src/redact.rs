//! Secret values out of text that gitmoor did not write itself: build output, healthcheck output,
//! the engine's error messages. Such text can echo a value (a `RUN echo $TOKEN`, a healthcheck
//! that prints its environment, an engine error quoting a create call), and it flows on to logs,
//! `/status`, the page and `state.json`, so it is redacted before it leaves the apply.

use std::collections::BTreeMap;

/// Values shorter than this are left alone: they would blank out half of any text and are no
/// secret worth the name (a port, `true`, `dev`).
pub const MIN_SECRET_LEN: usize = 4;

/// Replaces known secret values with `***`.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Longest first, so a value containing another is replaced whole.
    values: Vec<String>,
}

impl Redactor {
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut kept: Vec<String> = Vec::new();
        for v in values {
            // A multi-line value is echoed line by line as often as whole.
            kept.push(v.to_string());
            if v.contains('\n') {
                kept.extend(v.lines().map(str::to_string));
            }
        }
        kept.retain(|v| v.len() >= MIN_SECRET_LEN);
        kept.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        kept.dedup();
        Redactor { values: kept }
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The longest value, in bytes: how much text a stream must hold back before it is sure no
    /// value straddles the cut.
    pub fn longest(&self) -> usize {
        self.values.first().map_or(0, String::len)
    }

    pub fn apply(&self, text: &str) -> String {
        let mut s = text.to_string();
        for v in &self.values {
            if s.contains(v.as_str()) {
                s = s.replace(v.as_str(), "***");
            }
        }
        s
    }
}

/// One redactor per stack: the values of that stack's host secrets. An error of a stack is
/// redacted with its own stack's values (its text can only quote those).
pub type StackRedactors = BTreeMap<String, Redactor>;

/// Cuts a stream that arrives in arbitrary chunks into whole lines before they are redacted, so a
/// value split across two chunks is still seen whole. A line longer than `max_line` bytes (a
/// build that prints without newlines) is cut there, keeping back enough bytes that a value
/// cannot straddle the cut unseen.
#[derive(Debug)]
pub struct LineBuffer {
    pending: String,
    max_line: usize,
}

impl LineBuffer {
    pub fn new(max_line: usize) -> Self {
        LineBuffer {
            pending: String::new(),
            max_line: max_line.max(1),
        }
    }

    /// Adds a chunk; returns the complete lines it finished (without their newline), redacted.
    pub fn push(&mut self, chunk: &str, redact: &Redactor) -> Vec<String> {
        self.pending.push_str(chunk);
        let mut out = Vec::new();
        // One pass over the chunk's lines, then one cut: a chunk of many short lines costs its
        // length, not its length times its lines.
        let mut start = 0;
        while let Some(i) = self.pending[start..].find('\n') {
            let line = &self.pending[start..start + i];
            out.push(redact.apply(line.trim_end_matches('\r')));
            start += i + 1;
        }
        self.pending.drain(..start);
        let keep = redact.longest().saturating_sub(1);
        if self.pending.len() > self.max_line.max(keep + 1) {
            // Redact the whole pending text, then emit all but a tail that could still be the
            // start of a value; the tail goes on with the next chunk.
            let redacted = redact.apply(&self.pending);
            let mut cut = redacted.len().saturating_sub(keep);
            while !redacted.is_char_boundary(cut) {
                cut -= 1;
            }
            out.push(redacted[..cut].to_string());
            self.pending = redacted[cut..].to_string();
        }
        out
    }

    /// The last, unfinished line, redacted; None when the stream ended with a newline.
    pub fn finish(&mut self, redact: &Redactor) -> Option<String> {
        let rest = std::mem::take(&mut self.pending);
        (!rest.is_empty()).then(|| redact.apply(&rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_values_longest_first_and_skips_short_ones() {
        let r = Redactor::new(["hunter22", "hunter22-extra", "abc"]);
        assert_eq!(
            r.apply("a hunter22-extra b hunter22 c abc"),
            "a *** b *** c abc"
        );
    }

    #[test]
    fn a_multi_line_value_is_hidden_line_by_line_too() {
        let r = Redactor::new(["-----KEY-----\nAAAABBBB\n-----END-----"]);
        assert_eq!(r.apply("got AAAABBBB"), "got ***");
    }

    #[test]
    fn a_value_split_across_chunks_is_still_hidden() {
        let r = Redactor::new(["s3cr3tvalue"]);
        let mut b = LineBuffer::new(4096);
        let mut lines = b.push("Step 1/2 : RUN echo s3c", &r);
        lines.extend(b.push("r3tvalue\nnext li", &r));
        lines.extend(b.push("ne\n", &r));
        assert_eq!(lines, vec!["Step 1/2 : RUN echo ***", "next line"]);
        assert_eq!(b.finish(&r), None);
    }

    #[test]
    fn an_endless_line_is_cut_without_letting_a_value_through() {
        let r = Redactor::new(["0123456789"]);
        let mut b = LineBuffer::new(16);
        let mut all = String::new();
        // The value arrives one byte at a time inside a line with no newline at all.
        for chunk in [
            "xxxxxxxxxxxxxxxxxxxxxx",
            "0",
            "1234",
            "56789",
            "yyyyyyyyyyyyyyyyyyyyy",
        ] {
            for l in b.push(chunk, &r) {
                all.push_str(&l);
            }
        }
        all.push_str(&b.finish(&r).unwrap_or_default());
        assert!(!all.contains("0123456789"), "{all}");
        assert!(all.contains("***"), "{all}");
        assert!(b.pending.is_empty());
    }
}
