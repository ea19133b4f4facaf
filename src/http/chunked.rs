//! Chunked transfer coding (RFC 9112 §7.1): an incremental decoder that works
//! on any split of its input, and the encoder side.
//!
//! The decoder is strict: every line ends in CRLF, a chunk-size line is at
//! most [`MAX_SIZE_LINE`] bytes (extensions are skipped), a size has at most 16
//! hex digits, and the trailer section is skipped but bounded by
//! [`MAX_TRAILER_BYTES`]. Every violation is a 400 (the proxy maps errors on
//! the upstream side to 502 itself).

use super::HttpError;

/// The last chunk with no trailers: ends a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";
/// Longest chunk-size line (size, whitespace, extensions), CRLF excluded.
pub const MAX_SIZE_LINE: usize = 1024;
/// Most bytes of the trailer section, CRLFs included.
pub const MAX_TRAILER_BYTES: usize = 8 * 1024;
/// Most hex digits in a chunk size (16 fill a u64).
const MAX_SIZE_DIGITS: u32 = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size (`digits` so far).
    Size {
        size: u64,
        digits: u32,
    },
    /// Whitespace after the size, before `;` or CR.
    SizeWs {
        size: u64,
    },
    /// Inside chunk extensions, up to CR.
    Ext {
        size: u64,
    },
    /// CR of the size line seen, LF expected.
    SizeLf {
        size: u64,
    },
    /// Chunk payload still to come.
    Data {
        remaining: u64,
    },
    /// CR after the payload expected.
    DataCr,
    /// LF after the payload expected.
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    /// Inside a trailer field line, up to CR.
    Trailer,
    /// CR of a trailer line seen, LF expected.
    TrailerLf,
    /// CR of the final empty line seen, LF expected.
    EndLf,
    Done,
    Failed(HttpError),
}

/// How far a [`ChunkedDecoder::feed`] call got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Input bytes consumed; never past the end of the chunked body.
    pub consumed: usize,
    /// The whole chunked body (trailers and final CRLF included) was consumed.
    pub done: bool,
}

/// Incremental chunked-body decoder.
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: State,
    /// Bytes of the current size line, or of the whole trailer section.
    line_bytes: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

const fn err(message: &'static str) -> HttpError {
    HttpError::new(400, message)
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder {
            state: State::Size { size: 0, digits: 0 },
            line_bytes: 0,
        }
    }

    /// The whole body has been consumed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes `input` up to and including the end of the chunked body, never
    /// past it (what follows belongs to the next message), calling `on_data`
    /// with each piece of chunk payload. After an error the decoder keeps
    /// returning that error.
    pub fn feed(
        &mut self,
        input: &[u8],
        on_data: &mut dyn FnMut(&[u8]),
    ) -> Result<Progress, HttpError> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Done => break,
                State::Failed(e) => return Err(e),
                State::Data { remaining } => {
                    // Bulk path: hand over as much payload as we have.
                    let take = remaining.min((input.len() - i) as u64) as usize;
                    on_data(&input[i..i + take]);
                    i += take;
                    let remaining = remaining - take as u64;
                    self.state = if remaining == 0 {
                        State::DataCr
                    } else {
                        State::Data { remaining }
                    };
                }
                _ => {
                    if let Err(e) = self.step(input[i]) {
                        self.state = State::Failed(e);
                        return Err(e);
                    }
                    i += 1;
                }
            }
        }
        if let State::Failed(e) = self.state {
            return Err(e);
        }
        Ok(Progress {
            consumed: i,
            done: self.is_done(),
        })
    }

    /// Advances the state machine by one framing byte (not payload).
    #[inline]
    fn step(&mut self, b: u8) -> Result<(), HttpError> {
        self.state = match self.state {
            State::Size { size, digits } => {
                self.count_size_line()?;
                match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if digits >= MAX_SIZE_DIGITS {
                            return Err(err("chunk size too large"));
                        }
                        let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                        State::Size {
                            size: (size << 4) | d,
                            digits: digits + 1,
                        }
                    }
                    _ if digits == 0 => return Err(err("invalid chunk size")),
                    b' ' | b'\t' => State::SizeWs { size },
                    b';' => State::Ext { size },
                    b'\r' => State::SizeLf { size },
                    _ => return Err(err("invalid chunk size")),
                }
            }
            State::SizeWs { size } => {
                self.count_size_line()?;
                match b {
                    b' ' | b'\t' => State::SizeWs { size },
                    b';' => State::Ext { size },
                    b'\r' => State::SizeLf { size },
                    _ => return Err(err("invalid chunk size line")),
                }
            }
            State::Ext { size } => {
                self.count_size_line()?;
                match b {
                    b'\r' => State::SizeLf { size },
                    b'\t' | 0x20..=0x7e | 0x80..=0xff => State::Ext { size },
                    _ => return Err(err("invalid chunk extension")),
                }
            }
            State::SizeLf { size } => {
                if b != b'\n' {
                    return Err(err("chunk size line not ended by CRLF"));
                }
                self.line_bytes = 0;
                if size == 0 {
                    State::TrailerStart
                } else {
                    State::Data { remaining: size }
                }
            }
            State::DataCr => match b {
                b'\r' => State::DataLf,
                _ => return Err(err("missing CRLF after chunk data")),
            },
            State::DataLf => match b {
                b'\n' => State::Size { size: 0, digits: 0 },
                _ => return Err(err("missing CRLF after chunk data")),
            },
            State::TrailerStart => {
                self.count_trailer()?;
                match b {
                    b'\r' => State::EndLf,
                    b'\t' | 0x20..=0x7e | 0x80..=0xff => State::Trailer,
                    _ => return Err(err("invalid trailer")),
                }
            }
            State::Trailer => {
                self.count_trailer()?;
                match b {
                    b'\r' => State::TrailerLf,
                    b'\t' | 0x20..=0x7e | 0x80..=0xff => State::Trailer,
                    _ => return Err(err("invalid trailer")),
                }
            }
            State::TrailerLf => {
                self.count_trailer()?;
                match b {
                    b'\n' => State::TrailerStart,
                    _ => return Err(err("trailer line not ended by CRLF")),
                }
            }
            State::EndLf => match b {
                b'\n' => State::Done,
                _ => return Err(err("chunked body not ended by CRLF")),
            },
            // Handled by `feed`.
            s @ (State::Data { .. } | State::Done | State::Failed(_)) => s,
        };
        Ok(())
    }

    #[inline]
    fn count_size_line(&mut self) -> Result<(), HttpError> {
        self.line_bytes += 1;
        if self.line_bytes > MAX_SIZE_LINE {
            return Err(err("chunk size line too long"));
        }
        Ok(())
    }

    #[inline]
    fn count_trailer(&mut self) -> Result<(), HttpError> {
        self.line_bytes += 1;
        if self.line_bytes > MAX_TRAILER_BYTES {
            return Err(err("chunked trailers too large"));
        }
        Ok(())
    }
}

/// Appends `data` as one chunk: `<hex size>\r\n<data>\r\n`. Empty data
/// appends nothing (an empty chunk would end the body: use [`LAST_CHUNK`]).
pub fn encode_chunk(data: &[u8], out: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    let mut hex = [0u8; 16];
    let mut n = data.len();
    let mut i = hex.len();
    while n > 0 {
        i -= 1;
        hex[i] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
    }
    out.reserve(hex.len() - i + data.len() + 4);
    out.extend_from_slice(&hex[i..]);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"5;name=value;x=\"q\"\r\nhello\r\n\
        1A \t;ext\r\nabcdefghijklmnopqrstuvwxyz\r\n\
        0000000000000003\r\n\r\n\r\r\n\
        0;last\r\nX-Trailer: 1\r\nOther: two words\r\n\r\n";
    const PAYLOAD: &[u8] = b"helloabcdefghijklmnopqrstuvwxyz\r\n\r";
    const NEXT: &[u8] = b"GET /next HTTP/1.1\r\n\r\n";

    /// Feeds `parts` in order, returns (payload, total consumed, done).
    fn run(parts: &[&[u8]]) -> Result<(Vec<u8>, usize, bool), HttpError> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut consumed = 0;
        let mut done = false;
        for p in parts {
            let pr = d.feed(p, &mut |b| out.extend_from_slice(b))?;
            assert!(pr.consumed <= p.len());
            if !pr.done {
                // Not done: everything offered must have been taken.
                assert_eq!(pr.consumed, p.len());
            }
            consumed += pr.consumed;
            done = pr.done;
            assert_eq!(done, d.is_done());
            if done {
                break;
            }
        }
        Ok((out, consumed, done))
    }

    fn decode_err(input: &[u8]) -> HttpError {
        match run(&[input]) {
            Err(e) => e,
            Ok(r) => panic!("{:?} decoded: {:?}", String::from_utf8_lossy(input), r),
        }
    }

    #[test]
    fn http_chunked_whole_body_then_pipelined_bytes_untouched() {
        let mut input = BODY.to_vec();
        input.extend_from_slice(NEXT);
        let (out, consumed, done) = run(&[&input]).unwrap();
        assert!(done);
        assert_eq!(consumed, BODY.len());
        assert_eq!(out, PAYLOAD);
    }

    #[test]
    fn http_chunked_split_at_every_position() {
        let mut input = BODY.to_vec();
        input.extend_from_slice(NEXT);
        for split in 0..=input.len() {
            let (a, b) = input.split_at(split);
            let (out, consumed, done) = run(&[a, b]).unwrap();
            assert!(done, "split {split}");
            assert_eq!(consumed, BODY.len(), "split {split}");
            assert_eq!(out, PAYLOAD, "split {split}");
        }
        // And at every pair of positions.
        for i in 0..=BODY.len() {
            for j in i..=BODY.len() {
                let (out, consumed, done) = run(&[&input[..i], &input[i..j], &input[j..]]).unwrap();
                assert!(
                    done && consumed == BODY.len() && out == PAYLOAD,
                    "splits {i} {j}"
                );
            }
        }
    }

    #[test]
    fn http_chunked_one_byte_at_a_time() {
        let mut input = BODY.to_vec();
        input.extend_from_slice(NEXT);
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut consumed = 0;
        for (i, b) in input.iter().enumerate() {
            let pr = d
                .feed(std::slice::from_ref(b), &mut |x| out.extend_from_slice(x))
                .unwrap();
            consumed += pr.consumed;
            assert_eq!(pr.done, i + 1 >= BODY.len(), "byte {i}");
            assert_eq!(pr.consumed, usize::from(i < BODY.len()), "byte {i}");
        }
        assert_eq!(consumed, BODY.len());
        assert_eq!(out, PAYLOAD);
        // Once done, nothing more is consumed.
        let pr = d
            .feed(b"5\r\nhello\r\n", &mut |_| panic!("no data after the end"))
            .unwrap();
        assert_eq!(
            pr,
            Progress {
                consumed: 0,
                done: true
            }
        );
    }

    #[test]
    fn http_chunked_empty_body_and_big_size() {
        let (out, consumed, done) = run(&[LAST_CHUNK]).unwrap();
        assert!(done && out.is_empty() && consumed == LAST_CHUNK.len());
        // 16 hex digits is the most; a u64-sized chunk starts fine.
        let mut d = ChunkedDecoder::new();
        let pr = d.feed(b"ffffffffffffffff\r\nab", &mut |_| {}).unwrap();
        assert_eq!(
            pr,
            Progress {
                consumed: 20,
                done: false
            }
        );
        // Empty input is a no-op.
        assert_eq!(d.feed(b"", &mut |_| {}).unwrap().consumed, 0);
    }

    #[test]
    fn http_chunked_size_errors() {
        let cases: &[&[u8]] = &[
            b"x\r\n",
            b"\r\n",
            b";ext\r\n",
            b" 5\r\n",
            b"-5\r\n",
            b"5 x\r\n",
            b"0x5\r\n",
            b"10000000000000000\r\n", // 17 digits: overflow
            b"00000000000000001\r\n", // 17 digits, even if small
            b"5\n",                   // LF-only
            b"5\rx",
            b"5;a\x01b\r\n",
            b"5;a\nb\r\n",
        ];
        for c in cases {
            assert_eq!(
                decode_err(c).status,
                400,
                "{:?}",
                String::from_utf8_lossy(c)
            );
        }
        let mut long = b"5;".to_vec();
        long.resize(MAX_SIZE_LINE, b'a');
        let mut d = ChunkedDecoder::new();
        assert!(d.feed(&long, &mut |_| {}).is_ok());
        assert_eq!(d.feed(b"a", &mut |_| {}).unwrap_err().status, 400);
    }

    #[test]
    fn http_chunked_data_crlf_errors() {
        for c in [
            &b"3\r\nabcX\r\n0\r\n\r\n"[..],
            b"3\r\nabc\rX0\r\n\r\n",
            b"3\r\nabc\n0\r\n\r\n",
            b"3\r\nabcd\r\n0\r\n\r\n",
        ] {
            assert_eq!(
                decode_err(c).status,
                400,
                "{:?}",
                String::from_utf8_lossy(c)
            );
        }
    }

    #[test]
    fn http_chunked_trailer_errors_and_limit() {
        for c in [
            &b"0\r\nX: 1\n\r\n"[..],
            b"0\r\n\n",
            b"0\r\nX: 1\rY\r\n\r\n",
            b"0\r\n\rX",
            b"0\r\nX: a\x00b\r\n\r\n",
        ] {
            assert_eq!(
                decode_err(c).status,
                400,
                "{:?}",
                String::from_utf8_lossy(c)
            );
        }
        let mut ok = b"0\r\n".to_vec();
        let mut trailer = Vec::new();
        while trailer.len() + 20 <= MAX_TRAILER_BYTES - 2 {
            trailer.extend_from_slice(b"X-T: 0123456789abc\r\n");
        }
        ok.extend_from_slice(&trailer);
        ok.extend_from_slice(b"\r\n");
        assert!(run(&[&ok]).unwrap().2);
        let mut big = b"0\r\n".to_vec();
        while big.len() < MAX_TRAILER_BYTES + 100 {
            big.extend_from_slice(b"X-T: 0123456789abc\r\n");
        }
        big.extend_from_slice(b"\r\n");
        assert_eq!(decode_err(&big).status, 400);
    }

    #[test]
    fn http_chunked_error_is_sticky() {
        let mut d = ChunkedDecoder::new();
        assert!(d.feed(b"zz", &mut |_| {}).is_err());
        assert!(d.feed(b"0\r\n\r\n", &mut |_| {}).is_err());
        assert!(!d.is_done());
    }

    #[test]
    fn http_chunked_encode_and_roundtrip() {
        let mut out = Vec::new();
        encode_chunk(b"", &mut out);
        assert!(out.is_empty());
        encode_chunk(b"hello", &mut out);
        assert_eq!(out, b"5\r\nhello\r\n");
        out.clear();
        let big = vec![b'x'; 0x1a2b];
        encode_chunk(&big, &mut out);
        assert!(out.starts_with(b"1a2b\r\nxxx"));
        assert!(out.ends_with(b"x\r\n"));
        assert_eq!(out.len(), 4 + 2 + 0x1a2b + 2);

        let mut wire = Vec::new();
        let pieces: [&[u8]; 4] = [b"data: {\"a\":1}\n\n", b"", b"x", &big];
        for p in pieces {
            encode_chunk(p, &mut wire);
        }
        wire.extend_from_slice(LAST_CHUNK);
        let (decoded, consumed, done) = run(&[&wire]).unwrap();
        assert!(done);
        assert_eq!(consumed, wire.len());
        assert_eq!(decoded, pieces.concat());
    }
}
