//! Where the stream's chunks end. A streamed chat response is a series of server-sent events,
//! one `chat.completion.chunk` each; how they are split into body reads is up to every hop on
//! the way (a proxy may hand several over in one write). The gaps the client sees are between
//! events: each event counts as arrived with the read that completed it.

/// Follows SSE line structure across body reads and counts completed events.
#[derive(Debug, Default)]
pub struct EventEnds {
    /// The line in progress: nothing yet, only a `\r`, or text.
    line: Line,
    /// A non-empty line was seen since the last event ended (blank lines alone end nothing).
    fields: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Line {
    #[default]
    Empty,
    Cr,
    Text,
}

impl Line {
    fn extend(self, part: &[u8]) -> Line {
        match (self, part) {
            (s, []) => s,
            (Line::Empty, b"\r") => Line::Cr,
            _ => Line::Text,
        }
    }
}

impl EventEnds {
    /// Reads the next piece of the body; returns how many events it completed.
    pub fn feed(&mut self, data: &[u8]) -> usize {
        let mut ended = 0;
        let mut start = 0;
        for i in memchr::memchr_iter(b'\n', data) {
            let line = self.line.extend(&data[start..i]);
            if line == Line::Text {
                self.fields = true;
            } else if std::mem::take(&mut self.fields) {
                ended += 1;
            }
            self.line = Line::Empty;
            start = i + 1;
        }
        self.line = self.line.extend(&data[start..]);
        ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(pieces: &[&[u8]]) -> Vec<usize> {
        let mut e = EventEnds::default();
        pieces.iter().map(|p| e.feed(p)).collect()
    }

    #[test]
    fn events_whole_and_several_per_read() {
        assert_eq!(count(&[b"data: {\"a\":1}\n\n"]), [1]);
        assert_eq!(count(&[b"data: 1\n\ndata: 2\n\ndata: [DONE]\n\n"]), [3]);
    }

    #[test]
    fn events_split_anywhere_count_once_where_they_end() {
        let body = b"data: one\n\ndata: two\r\n\r\n: comment\nevent: x\ndata: three\n\n";
        for cut in 0..=body.len() {
            for cut2 in cut..=body.len() {
                let got = count(&[&body[..cut], &body[cut..cut2], &body[cut2..]]);
                assert_eq!(got.iter().sum::<usize>(), 3, "cuts {cut} {cut2}");
            }
        }
        assert_eq!(count(&[b"data: a\n", b"\n"]), [0, 1]);
        assert_eq!(count(&[b"data: a\r\n\r", b"\n"]), [0, 1]);
    }

    #[test]
    fn blank_lines_alone_and_unfinished_events_end_nothing() {
        assert_eq!(count(&[b"\n\n\r\n\n"]), [0]);
        assert_eq!(count(&[b"data: a\n\n\n\n"]), [1]);
        assert_eq!(count(&[b"data: a\ndata: b\n"]), [0]);
        assert_eq!(count(&[b"", b"data: half"]), [0, 0]);
    }
}
