//! An incremental Server-Sent Events reader: event boundaries do not line up with reads or
//! HTTP chunks, so bytes are fed as they come and events come out when complete.
//!
//! Only `data:` fields matter here (vLLM sends nothing else; the Responses API adds `event:`,
//! whose type is repeated in the data). Lines end with LF or CRLF; an empty line ends an event;
//! several `data:` lines join with LF, as the HTML standard says. An incomplete event at the
//! end of the stream is discarded, as browsers do. Memory is bounded: a line longer than
//! [`MAX_LINE`] is skipped and counted.

/// The longest line kept (vLLM chunks are a few hundred bytes; logprobs make them longer).
pub const MAX_LINE: usize = 4 << 20;

/// Reads events out of a byte stream.
#[derive(Debug, Default)]
pub struct SseReader {
    /// An incomplete line carried over from the previous chunk.
    line: Vec<u8>,
    /// The current event's data.
    data: Vec<u8>,
    has_data: bool,
    /// The line being carried is too long and is being skipped.
    skipping: bool,
    /// Lines skipped for length.
    pub oversized_lines: u32,
}

impl SseReader {
    /// Feeds `chunk`; calls `on_event(data, end)` for each event completed in it, where `end`
    /// is the offset in `chunk` just after the event's terminating empty line.
    ///
    /// An event whose one `data:` line and terminating empty line both lie in `chunk` (the
    /// usual case) is handed over as a slice of `chunk`, without being copied.
    pub fn feed(&mut self, chunk: &[u8], mut on_event: impl FnMut(&[u8], usize)) {
        let mut pos = 0;
        // The current event's data when it is one line of this chunk, not yet copied.
        let mut here: Option<(usize, usize)> = None;
        while pos < chunk.len() {
            let Some(nl) = memchr::memchr(b'\n', &chunk[pos..]) else {
                self.keep(chunk, &mut here);
                self.carry(&chunk[pos..]);
                return;
            };
            let end = pos + nl + 1;
            if self.line.is_empty() && !self.skipping {
                self.line_in_chunk(chunk, pos, pos + nl, end, &mut here, &mut on_event);
            } else {
                self.carry(&chunk[pos..pos + nl]);
                let line = std::mem::take(&mut self.line);
                if self.skipping {
                    self.skipping = false;
                } else {
                    self.line_complete(&line, end, &mut on_event);
                }
                self.line = line;
                self.line.clear();
            }
            pos = end;
        }
        self.keep(chunk, &mut here);
    }

    /// Copies data still referring to `chunk` into the reader, before `chunk` goes away or more
    /// data joins it.
    fn keep(&mut self, chunk: &[u8], here: &mut Option<(usize, usize)>) {
        if let Some((a, b)) = here.take() {
            self.data.extend_from_slice(&chunk[a..b]);
            self.has_data = true;
        }
    }

    /// A line that lies whole in `chunk`, `chunk[start..stop]`, its newline ending at `end`.
    fn line_in_chunk(
        &mut self,
        chunk: &[u8],
        start: usize,
        mut stop: usize,
        end: usize,
        here: &mut Option<(usize, usize)>,
        on_event: &mut impl FnMut(&[u8], usize),
    ) {
        // `line_complete` strips the CR itself: it gets the line as it came.
        let raw = &chunk[start..stop];
        if stop > start && chunk[stop - 1] == b'\r' {
            stop -= 1;
        }
        let line = &chunk[start..stop];
        if line.is_empty() {
            if let Some((a, b)) = here.take() {
                on_event(&chunk[a..b], end);
            } else if self.has_data {
                on_event(&self.data, end);
                self.data.clear();
                self.has_data = false;
            }
            return;
        }
        if line.starts_with(b"data:") {
            let mut a = start + 5;
            if chunk.get(a) == Some(&b' ') && a < stop {
                a += 1;
            }
            if !self.has_data && here.is_none() && stop - a <= MAX_LINE {
                *here = Some((a, stop));
                return;
            }
            self.keep(chunk, here);
            self.line_complete(raw, end, on_event);
        }
    }

    fn carry(&mut self, bytes: &[u8]) {
        if self.skipping {
            return;
        }
        if self.line.len() + bytes.len() > MAX_LINE {
            self.line.clear();
            self.skipping = true;
            self.oversized_lines += 1;
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    fn line_complete(&mut self, line: &[u8], end: usize, on_event: &mut impl FnMut(&[u8], usize)) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if self.has_data {
                on_event(&self.data, end);
                self.data.clear();
                self.has_data = false;
            }
            return;
        }
        if let Some(value) = line.strip_prefix(b"data:") {
            let value = value.strip_prefix(b" ").unwrap_or(value);
            if self.has_data {
                self.data.push(b'\n');
            }
            if self.data.len() + value.len() <= MAX_LINE {
                self.data.extend_from_slice(value);
            } else {
                self.oversized_lines += 1;
            }
            self.has_data = true;
        }
    }

    /// Whether bytes of an unfinished event are held.
    pub fn mid_event(&self) -> bool {
        self.has_data || !self.line.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(chunks: &[&[u8]]) -> Vec<(String, usize, usize)> {
        let mut r = SseReader::default();
        let mut out = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            r.feed(c, |d, end| {
                out.push((String::from_utf8_lossy(d).into_owned(), i, end))
            });
        }
        out
    }

    #[test]
    fn splits_across_chunks_and_line_endings() {
        let whole = events(&[b"data: {\"a\":1}\n\ndata: [DONE]\n\n"]);
        assert_eq!(
            whole,
            vec![("{\"a\":1}".into(), 0, 15), ("[DONE]".into(), 0, 29)]
        );
        let pieces = events(&[b"da", b"ta: {\"a\"", b":1}\n", b"\ndata:[DONE]\r\n\r\n"]);
        assert_eq!(
            pieces,
            vec![("{\"a\":1}".into(), 3, 1), ("[DONE]".into(), 3, 16)]
        );
        let multi = events(&[b"event: x\ndata: a\ndata: b\n: comment\n\n"]);
        assert_eq!(multi[0].0, "a\nb");
        // Incomplete at the end: nothing.
        assert!(events(&[b"data: {\"a\":1}\n"]).is_empty());
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        // The second event's lines end in CR CR LF: one CR ends the line, the other is data
        // (found by the sse_stream fuzz target: a second data line lost both when whole).
        let stream: &[u8] =
            b"data: {\"x\":\"\xc3\xa9\"}\n\ndata: two\r\r\ndata: three\r\r\n\r\n: c\n\ndata: [DONE]\n\n";
        let want: Vec<String> = events(&[stream]).into_iter().map(|e| e.0).collect();
        for i in 0..stream.len() {
            for j in i..stream.len() {
                let got: Vec<String> = events(&[&stream[..i], &stream[i..j], &stream[j..]])
                    .into_iter()
                    .map(|e| e.0)
                    .collect();
                assert_eq!(got, want, "split at {i},{j}");
            }
        }
    }
}
