//! A small incremental Server-Sent Events parser: bytes in as they arrive
//! (split anywhere), whole events out.

/// One event: its `event:` name (empty when none) and its `data:` lines
/// joined with `\n`.
#[derive(Debug, PartialEq, Eq)]
pub struct Event<'a> {
    pub name: &'a str,
    pub data: &'a [u8],
}

/// Holds a partial event between feeds.
#[derive(Default)]
pub struct Parser {
    pending: Vec<u8>,
    data: Vec<u8>,
    name: String,
}

/// Refuse events larger than this (a confused upstream).
pub const MAX_EVENT: usize = 4 << 20;

impl Parser {
    /// Feeds bytes; calls `on_event` for every complete event. `Err` when
    /// one event grows past [`MAX_EVENT`].
    pub fn feed(&mut self, bytes: &[u8], on_event: &mut dyn FnMut(Event<'_>)) -> Result<(), ()> {
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(nl) = self.pending[start..].iter().position(|&b| b == b'\n') {
            let line_end = start + nl;
            let mut line = &self.pending[start..line_end];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            start = line_end + 1;
            if line.is_empty() {
                if !self.data.is_empty() || !self.name.is_empty() {
                    on_event(Event {
                        name: &self.name,
                        data: &self.data,
                    });
                }
                self.data.clear();
                self.name.clear();
                continue;
            }
            if line[0] == b':' {
                continue; // comment
            }
            let (field, value) = match line.iter().position(|&b| b == b':') {
                Some(i) => {
                    let v = &line[i + 1..];
                    (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
                }
                None => (line, &b""[..]),
            };
            match field {
                b"data" => {
                    if !self.data.is_empty() {
                        self.data.push(b'\n');
                    }
                    self.data.extend_from_slice(value);
                }
                b"event" => {
                    self.name.clear();
                    self.name.push_str(&String::from_utf8_lossy(value));
                }
                _ => {}
            }
        }
        self.pending.drain(..start);
        if self.pending.len() + self.data.len() > MAX_EVENT {
            return Err(());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(pieces: &[&[u8]]) -> Vec<(String, String)> {
        let mut p = Parser::default();
        let mut out = Vec::new();
        for piece in pieces {
            p.feed(piece, &mut |e| {
                out.push((
                    e.name.to_string(),
                    String::from_utf8_lossy(e.data).into_owned(),
                ))
            })
            .unwrap();
        }
        out
    }

    #[test]
    fn whole_and_split_events() {
        let all = b"event: a\ndata: {\"x\":1}\n\n: ping\n\ndata: one\ndata: two\r\n\r\n";
        let want = vec![
            ("a".to_string(), "{\"x\":1}".to_string()),
            (String::new(), "one\ntwo".to_string()),
        ];
        assert_eq!(events(&[all]), want);
        // Byte by byte.
        let bytes: Vec<&[u8]> = all.chunks(1).collect();
        assert_eq!(events(&bytes), want);
    }

    #[test]
    fn oversized_event_is_refused() {
        let mut p = Parser::default();
        let big = vec![b'x'; MAX_EVENT + 1];
        assert!(p.feed(&big, &mut |_| {}).is_err());
    }
}
