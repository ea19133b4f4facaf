//! JSON in a canonical form, for keys: the cache hashes a request this way.
//!
//! The canonical form of a value is its JSON with no insignificant
//! whitespace and every object's members sorted by their key's bytes (a
//! stable sort: repeated keys keep their order). Strings and numbers stay
//! as written: `"A"` and `"\u0041"`, or `1` and `1.0`, are different keys.
//! That only costs a miss; two requests that differ in meaning never share
//! a canonical form.
//!
//! One pass checks the input against JSON's grammar (a key must come from
//! valid JSON) and writes the canonical form as it goes: the input is copied
//! in runs between its whitespace (a compact document in one copy), and an
//! object whose keys came out of order is rewritten in order when it closes
//! (one copy of its members, which are already canonical inside). No tree is built: an open object keeps one
//! record per member, and the top level's records stay for
//! [`Object::members`]. The memory lives in a [`Scratch`] the caller keeps,
//! so a parse allocates nothing once it has grown to fit.

/// Nesting deeper than this is refused (serde_json's own limit).
pub const MAX_DEPTH: usize = 128;

/// A member of an object being written (or of the top level).
#[derive(Debug, Clone, Copy)]
struct Member {
    /// The key between its quotes, in the input.
    key: (u32, u32),
    /// Where the member starts in the output (its key's opening quote).
    text: u32,
    /// Its value in the output; the end is set when the value ends.
    val: (u32, u32),
}

/// A container being written.
#[derive(Debug, Clone, Copy)]
struct Frame {
    object: bool,
    /// Its first member in [`Scratch::members`] (objects).
    base: u32,
    /// Where its members start in the output (past the bracket).
    start: u32,
}

/// The parser's memory, kept from one parse to the next (one per thread).
#[derive(Debug, Default)]
pub struct Scratch {
    /// The canonical form being written.
    out: Vec<u8>,
    /// Members of the objects still open, innermost last.
    members: Vec<Member>,
    frames: Vec<Frame>,
    /// An out-of-order object's members while they are rewritten.
    tmp: Vec<u8>,
}

impl Scratch {
    pub const fn new() -> Scratch {
        Scratch {
            out: Vec::new(),
            members: Vec::new(),
            frames: Vec::new(),
            tmp: Vec::new(),
        }
    }

    /// Frees what a large document grew, when it holds more than `bytes`.
    pub fn trim(&mut self, bytes: usize) {
        let held = self.out.capacity()
            + self.tmp.capacity()
            + self.members.capacity() * std::mem::size_of::<Member>()
            + self.frames.capacity() * std::mem::size_of::<Frame>();
        if held > bytes {
            *self = Scratch::new();
        }
    }
}

/// A parsed JSON document whose top level is an object.
#[derive(Debug)]
pub struct Object<'a> {
    input: &'a [u8],
    /// The whole document's canonical form.
    out: &'a [u8],
    /// The top level's members, sorted.
    members: &'a [Member],
}

/// A value inside an [`Object`]: its canonical form.
#[derive(Debug, Clone, Copy)]
pub struct Value<'a> {
    text: &'a [u8],
}

impl<'a> Object<'a> {
    /// Parses `input` into `scratch`: `None` unless it is exactly one JSON
    /// object (with optional whitespace around it), nested at most
    /// [`MAX_DEPTH`] deep.
    pub fn parse(input: &'a [u8], scratch: &'a mut Scratch) -> Option<Object<'a>> {
        if input.len() > u32::MAX as usize {
            return None;
        }
        let s = scratch;
        s.out.clear();
        s.members.clear();
        s.frames.clear();
        // The canonical form is never longer than the input.
        s.out.reserve(input.len());
        let mut p = Parser {
            input,
            pos: 0,
            copied: 0,
            s: &mut *s,
        };
        p.ws();
        if p.peek() != Some(b'{') {
            return None;
        }
        p.document()?;
        p.ws();
        p.flush();
        if p.pos != input.len() {
            return None;
        }
        Some(Object {
            input,
            out: &s.out,
            members: &s.members,
        })
    }

    /// The top-level members: raw key (between the quotes) and value, in
    /// canonical (sorted) order.
    pub fn members(&self) -> impl Iterator<Item = (&'a [u8], Value<'a>)> + '_ {
        self.members.iter().map(move |m| {
            (
                &self.input[m.key.0 as usize..m.key.1 as usize],
                Value {
                    text: &self.out[m.val.0 as usize..m.val.1 as usize],
                },
            )
        })
    }

    /// Appends the canonical form of the top-level object without the
    /// members whose key `skip` accepts.
    pub fn write_without(&self, out: &mut Vec<u8>, skip: impl Fn(&[u8]) -> bool) {
        self.pieces_without(skip, |piece| out.extend_from_slice(piece));
    }

    /// The canonical form of the top-level object without the members
    /// whose key `skip` accepts, given to `f` in as few pieces as it is
    /// (one when nothing is skipped): to hash it without copying it.
    pub fn pieces_without(&self, skip: impl Fn(&[u8]) -> bool, mut f: impl FnMut(&[u8])) {
        // A run of kept members is one range of the output, commas and all.
        let mut run: Option<(usize, usize)> = None;
        let mut opened = false;
        for (i, m) in self.members.iter().enumerate() {
            if skip(&self.input[m.key.0 as usize..m.key.1 as usize]) {
                if let Some((s, e)) = run.take() {
                    f(&self.out[s..e]);
                }
                continue;
            }
            let (text, end) = (m.text as usize, m.val.1 as usize);
            run = Some(match run {
                Some((s, _)) => (s, end),
                // The first member: from the bracket.
                None if i == 0 => (0, end),
                None => {
                    f(if opened { b"," } else { b"{" });
                    (text, end)
                }
            });
            opened = true;
        }
        match run {
            // The last member was kept: its value ends at the bracket.
            Some((s, e)) => f(&self.out[s..=e]),
            None if opened => f(b"}"),
            None => f(b"{}"),
        }
    }
}

impl<'a> Value<'a> {
    /// The value as written when it is a string (with its quotes), a
    /// number or a literal; `None` for an object or an array.
    pub fn leaf(&self) -> Option<&'a [u8]> {
        match self.text.first() {
            Some(b'{' | b'[') | None => None,
            Some(_) => Some(self.text),
        }
    }

    /// Whether it is an object whose member `key` (the last, as written)
    /// is `true`.
    pub fn is_true_at(&self, key: &str) -> bool {
        if self.text.first() != Some(&b'{') {
            return false;
        }
        let mut scratch = Scratch::new();
        let Some(o) = Object::parse(self.text, &mut scratch) else {
            return false;
        };
        let found = o.members().filter(|(k, _)| *k == key.as_bytes()).last();
        found.is_some_and(|(_, v)| v.text == b"true")
    }

    /// Appends its canonical form.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.text);
    }
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    /// The input before this is in the output (or was whitespace).
    copied: usize,
    s: &'a mut Scratch,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    /// Skips whitespace, first copying the run of input before it.
    fn ws(&mut self) {
        if let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.flush();
            self.pos += 1;
            while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
                self.pos += 1;
            }
            self.copied = self.pos;
        }
    }

    /// Copies the input read so far to the output.
    fn flush(&mut self) {
        self.s
            .out
            .extend_from_slice(&self.input[self.copied..self.pos]);
        self.copied = self.pos;
    }

    /// Where the current position lands in the output.
    fn at(&self) -> u32 {
        (self.s.out.len() + self.pos - self.copied) as u32
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// The top-level object (at `{`) and everything in it, written as it
    /// is read. A loop, not recursion: the open containers are frames.
    fn document(&mut self) -> Option<()> {
        self.open(true)?;
        let mut fresh = true;
        loop {
            self.ws();
            let f = *self.s.frames.last()?;
            let close = if f.object { b'}' } else { b']' };
            if !(fresh && self.peek() == Some(close)) {
                if f.object {
                    self.key()?;
                }
                match self.peek()? {
                    b'{' => {
                        self.open(true)?;
                        fresh = true;
                        continue;
                    }
                    b'[' => {
                        self.open(false)?;
                        fresh = true;
                        continue;
                    }
                    _ => self.leaf()?,
                }
                self.value_done();
                self.ws();
            }
            fresh = false;
            // After a value: the next member, or the end of its container
            // (and maybe of the ones around it).
            loop {
                if self.eat(b',') {
                    break;
                }
                let object = self.s.frames.last()?.object;
                if !self.eat(if object { b'}' } else { b']' }) {
                    return None;
                }
                self.close();
                if self.s.frames.is_empty() {
                    return Some(());
                }
                self.value_done();
                self.ws();
            }
        }
    }

    /// A container opens at the current byte.
    fn open(&mut self, object: bool) -> Option<()> {
        if self.s.frames.len() >= MAX_DEPTH {
            return None;
        }
        self.pos += 1;
        let start = self.at();
        self.s.frames.push(Frame {
            object,
            base: self.s.members.len() as u32,
            start,
        });
        Some(())
    }

    /// A member's key and its colon, written and recorded.
    fn key(&mut self) -> Option<()> {
        let start = self.pos;
        if self.peek() != Some(b'"') {
            return None;
        }
        let text = self.at();
        self.string()?;
        let key = ((start + 1) as u32, (self.pos - 1) as u32);
        self.ws();
        if !self.eat(b':') {
            return None;
        }
        self.ws();
        let v = self.at();
        self.s.members.push(Member {
            key,
            text,
            val: (v, v),
        });
        Some(())
    }

    /// A string, number or literal (copied with its run).
    fn leaf(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string(),
            b'-' | b'0'..=b'9' => self.number(),
            _ => {
                let rest = &self.input[self.pos..];
                let n = [&b"true"[..], b"false", b"null"]
                    .into_iter()
                    .find(|l| rest.starts_with(l))?
                    .len();
                self.pos += n;
                Some(())
            }
        }
    }

    /// A value ended: in an object, its member's record gets the end.
    fn value_done(&mut self) {
        let end = self.at();
        let s = &mut *self.s;
        if s.frames.last().is_some_and(|f| f.object) {
            if let Some(m) = s.members.last_mut() {
                m.val.1 = end;
            }
        }
    }

    /// The innermost container ends (its bracket just read): an object
    /// whose keys came out of order is rewritten in order.
    fn close(&mut self) {
        let Some(f) = self.s.frames.pop() else {
            return;
        };
        if !f.object {
            return;
        }
        let input = self.input;
        if !sort_members(input, &mut self.s.members[f.base as usize..]) {
            // Everything up to the bracket into the output, to be rewritten;
            // the bracket starts the next run.
            self.pos -= 1;
            self.flush();
            self.pos += 1;
            let s = &mut *self.s;
            let members = &mut s.members[f.base as usize..];
            let start = f.start as usize;
            s.tmp.clear();
            s.tmp.extend_from_slice(&s.out[start..]);
            s.out.truncate(start);
            for (i, m) in members.iter_mut().enumerate() {
                if i > 0 {
                    s.out.push(b',');
                }
                let (text, end) = (m.text as usize - start, m.val.1 as usize - start);
                let at = s.out.len() as u32;
                s.out.extend_from_slice(&s.tmp[text..end]);
                m.val = (at + (m.val.0 - m.text), at + (m.val.1 - m.text));
                m.text = at;
            }
        }
        // The top level's records stay for `members`.
        if !self.s.frames.is_empty() {
            self.s.members.truncate(f.base as usize);
        }
    }

    /// A string from its opening quote to past its closing one: escapes
    /// must be JSON's, control characters are refused.
    fn string(&mut self) -> Option<()> {
        self.pos += 1;
        loop {
            self.skip_plain();
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    return Some(());
                }
                b'\\' => {
                    self.pos += 1;
                    match self.peek()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.pos += 1,
                        b'u' => {
                            let hex = self.input.get(self.pos + 1..self.pos + 5)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            self.pos += 5;
                        }
                        _ => return None,
                    }
                }
                0..=0x1f => return None,
                _ => self.pos += 1,
            }
        }
    }

    /// Moves past the bytes of a string that need no look (anything but a
    /// quote, a backslash or a control character), eight at a time.
    fn skip_plain(&mut self) {
        const ONES: u64 = u64::from_ne_bytes([1; 8]);
        const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
        // Bit 7 of a byte of the result is set where `w`'s byte is below
        // `n` (n <= 0x80); exact for the lowest such byte, which is all
        // this reads (a borrow can only mark bytes above it).
        let below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGH;
        while let Some(chunk) = self.input.get(self.pos..self.pos + 8) {
            let w = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
            let marks = below(w, 0x20)
                | below(w ^ (ONES * u64::from(b'"')), 1)
                | below(w ^ (ONES * u64::from(b'\\')), 1);
            if marks != 0 {
                self.pos += (marks.trailing_zeros() / 8) as usize;
                return;
            }
            self.pos += 8;
        }
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Option<()> {
        self.eat(b'-');
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.eat(b'.') {
            if !self.peek()?.is_ascii_digit() {
                return None;
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !self.peek()?.is_ascii_digit() {
                return None;
            }
            self.digits();
        }
        Some(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }
}

/// Sorts an object's members by key, stably; true when they were in
/// order already. Requests' objects are small, so an insertion sort beats
/// the general one below a few dozen members.
fn sort_members(input: &[u8], members: &mut [Member]) -> bool {
    let key = |m: &Member| &input[m.key.0 as usize..m.key.1 as usize];
    // Keys are short: a loop beats a call to `memcmp`.
    let after = |a: &[u8], b: &[u8]| {
        for (x, y) in a.iter().zip(b) {
            if x != y {
                return x > y;
            }
        }
        a.len() > b.len()
    };
    if members.len() > 24 {
        if members.is_sorted_by(|a, b| !after(key(a), key(b))) {
            return true;
        }
        members.sort_by(|a, b| key(a).cmp(key(b)));
        return false;
    }
    let mut sorted = true;
    for i in 1..members.len() {
        let m = members[i];
        let mut j = i;
        while j > 0 && after(key(&members[j - 1]), key(&m)) {
            members[j] = members[j - 1];
            j -= 1;
        }
        if j != i {
            members[j] = m;
            sorted = false;
        }
    }
    sorted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> Option<String> {
        let mut scratch = Scratch::new();
        let o = Object::parse(s.as_bytes(), &mut scratch)?;
        let mut out = Vec::new();
        o.write_without(&mut out, |_| false);
        Some(String::from_utf8(out).unwrap())
    }

    #[test]
    fn sorts_keys_at_every_level_and_drops_whitespace() {
        assert_eq!(
            canon(
                " {\"b\" : [ {\"z\":1, \"a\": { \"y\":null,\"x\":true } }, 2 ] ,\n\"a\":\"s p\"}\t"
            )
            .as_deref(),
            Some(r#"{"a":"s p","b":[{"a":{"x":true,"y":null},"z":1},2]}"#)
        );
        assert_eq!(canon("{}").as_deref(), Some("{}"));
        assert_eq!(
            canon(r#"{"a":[],"b":{}}"#).as_deref(),
            Some(r#"{"a":[],"b":{}}"#)
        );
    }

    /// Small objects take the insertion sort and large ones the general
    /// sort: both order by key bytes and keep repeated keys in input order.
    #[test]
    fn members_sort_stably_at_every_size() {
        for n in [1usize, 2, 3, 23, 24, 25, 26, 60] {
            // Keys in a scrambled order, every third one repeated later
            // with its position as the value.
            let mut keys: Vec<(String, usize)> = (0..n)
                .map(|i| (format!("k{:02}", (i * 7 + 3) % n), i))
                .collect();
            keys.extend(
                (0..n)
                    .step_by(3)
                    .map(|i| (format!("k{:02}", (i * 7 + 3) % n), n + i)),
            );
            let doc = format!(
                "{{{}}}",
                keys.iter()
                    .map(|(k, v)| format!("\"{k}\":{v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let mut want = keys.clone();
            want.sort_by(|a, b| a.0.cmp(&b.0));
            let want = format!(
                "{{{}}}",
                want.iter()
                    .map(|(k, v)| format!("\"{k}\":{v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            assert_eq!(canon(&doc).as_deref(), Some(&want[..]), "{n} members");
        }
    }

    /// One scratch serves parse after parse, and trimming frees a large one.
    #[test]
    fn scratch_is_reused_and_trimmed() {
        let mut scratch = Scratch::new();
        let big = format!("{{\"a\":[{}]}}", vec!["1"; 5000].join(","));
        assert!(Object::parse(big.as_bytes(), &mut scratch).is_some());
        let mut out = Vec::new();
        Object::parse(br#"{"b":[2],"a":1}"#, &mut scratch)
            .unwrap()
            .write_without(&mut out, |_| false);
        assert_eq!(out, br#"{"a":1,"b":[2]}"#);
        assert!(scratch.out.capacity() >= 10_000);
        scratch.trim(64 << 10);
        assert!(scratch.out.capacity() >= 10_000, "small enough to keep");
        scratch.trim(4 << 10);
        assert_eq!(scratch.out.capacity() + scratch.members.capacity(), 0);
    }

    /// Random documents (unique keys, plain strings and numbers, random
    /// whitespace and nesting): the canonical form is what serde_json's
    /// sorted map writes, and the top level's members read back in order.
    #[test]
    fn random_documents_agree_with_serde_json() {
        struct Gen(u64);
        impl Gen {
            fn next(&mut self, n: u64) -> u64 {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0 % n
            }
            fn ws(&mut self, out: &mut String) {
                for _ in 0..self.next(3) {
                    out.push([' ', '\n', '\t', '\r'][self.next(4) as usize]);
                }
            }
            fn value(&mut self, out: &mut String, depth: u32) {
                match if depth > 4 {
                    self.next(4)
                } else {
                    self.next(6)
                } {
                    0 => out.push_str(&format!("\"s{} x\"", self.next(50))),
                    1 => out.push_str(["0", "-15", "17", "-0.5"][self.next(4) as usize]),
                    2 => out.push_str(["true", "false", "null"][self.next(3) as usize]),
                    3 => out.push_str("\"\""),
                    4 => self.object(out, depth + 1),
                    _ => {
                        out.push('[');
                        for i in 0..self.next(4) {
                            if i > 0 {
                                out.push(',');
                            }
                            self.ws(out);
                            self.value(out, depth + 1);
                            self.ws(out);
                        }
                        out.push(']');
                    }
                }
            }
            fn object(&mut self, out: &mut String, depth: u32) {
                out.push('{');
                let mut keys: Vec<u64> = (0..30).collect();
                for i in 0..self.next(7) {
                    let k = keys.swap_remove(self.next(keys.len() as u64) as usize);
                    if i > 0 {
                        out.push(',');
                    }
                    self.ws(out);
                    out.push_str(&format!("\"k{k}\""));
                    self.ws(out);
                    out.push(':');
                    self.ws(out);
                    self.value(out, depth);
                    self.ws(out);
                }
                out.push('}');
            }
        }
        let mut g = Gen(0x9e37_79b9_7f4a_7c15);
        let mut scratch = Scratch::new();
        for _ in 0..3000 {
            let mut doc = String::new();
            g.object(&mut doc, 0);
            let want =
                serde_json::to_string(&serde_json::from_str::<serde_json::Value>(&doc).unwrap())
                    .unwrap();
            let o = Object::parse(doc.as_bytes(), &mut scratch).expect(&doc);
            let mut out = Vec::new();
            o.write_without(&mut out, |_| false);
            assert_eq!(String::from_utf8(out).unwrap(), want, "{doc}");
            let map: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&doc).unwrap();
            let ours: Vec<(String, String)> = o
                .members()
                .map(|(k, v)| {
                    let mut w = Vec::new();
                    v.write(&mut w);
                    (
                        String::from_utf8(k.to_vec()).unwrap(),
                        String::from_utf8(w).unwrap(),
                    )
                })
                .collect();
            let theirs: Vec<(String, String)> = map
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string()))
                .collect();
            assert_eq!(ours, theirs, "{doc}");
            // Leaving out some top-level members (none, some or all).
            let drop = g.next(5);
            let skip = |k: &[u8]| k.last().is_some_and(|c| u64::from(*c) % 4 == drop);
            let mut pieces = Vec::new();
            o.pieces_without(skip, |p| pieces.extend_from_slice(p));
            let mut kept = map.clone();
            kept.retain(|k, _| !skip(k.as_bytes()));
            let want = serde_json::to_string(&kept).unwrap();
            assert_eq!(
                String::from_utf8(pieces).unwrap(),
                want,
                "{doc} without {drop}"
            );
        }
    }

    #[test]
    fn agrees_with_serde_json_where_both_write_the_same() {
        // Without escapes and with plain numbers, serde_json's map (sorted
        // by key) writes exactly the canonical form.
        for s in [
            r#"{"model":"gpt-4o","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi there"}],"temperature":0,"max_tokens":64}"#,
            r#"{"z":{"k":[1,-2,3,{"q":false,"p":null}]},"a":"x","m":[[],[[]],{}]}"#,
        ] {
            let v: serde_json::Value = serde_json::from_str(s).unwrap();
            assert_eq!(canon(s).unwrap(), serde_json::to_string(&v).unwrap(), "{s}");
        }
    }

    /// Strings are scanned eight bytes at a time: a quote, a backslash or a
    /// control character at any offset, in a key or a value, alone or after
    /// another, is read as serde_json reads it, and a string is kept whole.
    #[test]
    fn strings_at_every_offset_agree_with_serde_json() {
        let specials: [&[u8]; 10] = [
            b"\"",
            b"\\\"",
            b"\\n",
            b"\\u00e9",
            b"\\x",
            b"\n",
            b"\x01",
            b"\x1f",
            b"\x7f",
            "\u{e9}\u{1F600}".as_bytes(),
        ];
        for len in 0..26 {
            for at in 0..=len {
                for special in specials {
                    for twice in [false, true] {
                        let mut text: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
                        text.splice(at..at, special.iter().copied());
                        if twice {
                            text.splice(at..at, special.iter().copied());
                        }
                        for doc in [
                            [&b"{\"k\":\""[..], &text, b"\"}"].concat(),
                            [&b"{\""[..], &text, b"\":[1]}"].concat(),
                        ] {
                            let ours = Object::parse(&doc, &mut Scratch::new()).map(|o| {
                                let mut out = Vec::new();
                                o.write_without(&mut out, |_| false);
                                out
                            });
                            let theirs = serde_json::from_slice::<serde_json::Value>(&doc).is_ok();
                            let shown = String::from_utf8_lossy(&doc);
                            assert_eq!(ours.is_some(), theirs, "{shown}");
                            if let Some(out) = ours {
                                assert_eq!(out, doc, "{shown}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn refuses_what_is_not_one_json_object() {
        for s in [
            "",
            "[]",
            "1",
            "\"s\"",
            "{",
            "}",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{,}",
            "{\"a\":1}x",
            "{\"a\":1}{}",
            "{a:1}",
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"a\":.5}",
            "{\"a\":1e}",
            "{\"a\":-}",
            "{\"a\":tru}",
            "{\"a\":nul}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\\u12g4\"}",
            "{\"a\":\"\u{1}\"}",
            "{\"a\":\"open}",
            "{\"a\":[1,]}",
            "{\"a\":[1 2]}",
            "{\"a\" 1}",
        ] {
            assert!(canon(s).is_none(), "accepted {s:?}");
            // serde_json refuses the same inputs.
            assert!(
                serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(s).is_err(),
                "serde_json accepts {s:?}"
            );
        }
        for s in [
            r#"{"a":-0.5e+10,"b":0,"c":1E3,"d":"\"\\\/\b\f\n\r\t\u00e9"}"#,
            "{\"\u{e9}\":\"\u{1F600}\"}",
        ] {
            assert!(canon(s).is_some(), "refused {s:?}");
        }
    }

    #[test]
    fn depth_is_bounded() {
        let ok = format!(
            "{}{}",
            "{\"a\":".repeat(127),
            "1".to_owned() + &"}".repeat(127)
        );
        assert!(canon(&ok).is_some());
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        assert!(canon(&deep).is_none());
    }

    #[test]
    fn members_values_and_repeated_keys() {
        let mut scratch = Scratch::new();
        let o = Object::parse(
            br#"{"stream":true,"t":0,"t":0.5,"o":{"include_usage":true},"s":"x"}"#,
            &mut scratch,
        )
        .unwrap();
        let get = |key: &[u8]| {
            o.members()
                .filter(|(k, _)| *k == key)
                .map(|(_, v)| v)
                .collect::<Vec<_>>()
        };
        // Repeated keys stay in input order: the last is the one that counts.
        let t: Vec<_> = get(b"t").iter().map(|v| v.leaf()).collect();
        assert_eq!(t, [Some(&b"0"[..]), Some(&b"0.5"[..])]);
        assert_eq!(get(b"s")[0].leaf(), Some(&b"\"x\""[..]));
        assert!(get(b"o")[0].leaf().is_none());
        assert!(get(b"o")[0].is_true_at("include_usage"));
        assert!(!get(b"stream")[0].is_true_at("include_usage"));
        assert!(get(b"missing").is_empty());
        let mut out = Vec::new();
        o.write_without(&mut out, |k| k == b"stream" || k == b"o");
        assert_eq!(out, br#"{"s":"x","t":0,"t":0.5}"#);
    }
}
