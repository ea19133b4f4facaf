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
//! valid JSON) and records the tree as ranges of the input, without
//! allocating per value: objects' and arrays' members go to one arena, each
//! container's members contiguous. Writing walks that tree.

/// Nesting deeper than this is refused (serde_json's own limit).
pub const MAX_DEPTH: u32 = 128;

/// A parsed value: ranges of the input (leaves) or of the arena (containers).
#[derive(Debug, Clone, Copy)]
enum Node {
    /// A string (with its quotes), number, `true`, `false` or `null`.
    Leaf(u32, u32),
    Object(u32, u32),
    Array(u32, u32),
}

/// A member of an object (`key` is the string between the quotes, as
/// written) or an element of an array (`key` empty).
#[derive(Debug, Clone, Copy)]
struct Member {
    key: (u32, u32),
    node: Node,
}

/// A parsed JSON document whose top level is an object.
#[derive(Debug)]
pub struct Object<'a> {
    input: &'a [u8],
    arena: Vec<Member>,
    top: (u32, u32),
}

/// A value inside an [`Object`].
#[derive(Debug, Clone, Copy)]
pub struct Value<'d, 'a> {
    doc: &'d Object<'a>,
    node: Node,
}

impl<'a> Object<'a> {
    /// Parses `input`: `None` unless it is exactly one JSON object (with
    /// optional whitespace around it), nested at most [`MAX_DEPTH`] deep.
    pub fn parse(input: &'a [u8]) -> Option<Object<'a>> {
        if input.len() > u32::MAX as usize {
            return None;
        }
        let mut p = Parser {
            input,
            pos: 0,
            arena: Vec::with_capacity(16),
            stack: Vec::with_capacity(16),
        };
        p.ws();
        if p.peek() != Some(b'{') {
            return None;
        }
        let Node::Object(s, e) = p.value(0)? else {
            return None;
        };
        p.ws();
        if p.pos != input.len() {
            return None;
        }
        Some(Object {
            input,
            arena: p.arena,
            top: (s, e),
        })
    }

    /// The top-level members: raw key (between the quotes) and value, in
    /// canonical (sorted) order.
    pub fn members(&self) -> impl Iterator<Item = (&'a [u8], Value<'_, 'a>)> + '_ {
        self.arena[self.top.0 as usize..self.top.1 as usize]
            .iter()
            .map(move |m| {
                (
                    self.slice(m.key),
                    Value {
                        doc: self,
                        node: m.node,
                    },
                )
            })
    }

    /// Appends the canonical form of the top-level object without the
    /// members whose key `skip` accepts.
    pub fn write_without(&self, out: &mut Vec<u8>, skip: impl Fn(&[u8]) -> bool) {
        out.push(b'{');
        let mut first = true;
        for (k, v) in self.members() {
            if skip(k) {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            out.push(b'"');
            out.extend_from_slice(k);
            out.extend_from_slice(b"\":");
            v.write(out);
        }
        out.push(b'}');
    }

    fn slice(&self, (s, e): (u32, u32)) -> &'a [u8] {
        &self.input[s as usize..e as usize]
    }

    fn write_node(&self, node: Node, out: &mut Vec<u8>) {
        match node {
            Node::Leaf(s, e) => out.extend_from_slice(self.slice((s, e))),
            Node::Object(s, e) => {
                out.push(b'{');
                for (i, m) in self.arena[s as usize..e as usize].iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.push(b'"');
                    out.extend_from_slice(self.slice(m.key));
                    out.extend_from_slice(b"\":");
                    self.write_node(m.node, out);
                }
                out.push(b'}');
            }
            Node::Array(s, e) => {
                out.push(b'[');
                for (i, m) in self.arena[s as usize..e as usize].iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    self.write_node(m.node, out);
                }
                out.push(b']');
            }
        }
    }
}

impl<'a> Value<'_, 'a> {
    /// The value as written when it is a string (with its quotes), a
    /// number or a literal; `None` for an object or an array.
    pub fn leaf(&self) -> Option<&'a [u8]> {
        match self.node {
            Node::Leaf(s, e) => Some(self.doc.slice((s, e))),
            _ => None,
        }
    }

    /// Whether it is an object whose member `key` (the last, as written)
    /// is `true`.
    pub fn is_true_at(&self, key: &str) -> bool {
        let Node::Object(s, e) = self.node else {
            return false;
        };
        self.doc.arena[s as usize..e as usize]
            .iter()
            .rfind(|m| self.doc.slice(m.key) == key.as_bytes())
            .is_some_and(
                |m| matches!(m.node, Node::Leaf(s, e) if self.doc.slice((s, e)) == b"true"),
            )
    }

    /// Appends its canonical form.
    pub fn write(&self, out: &mut Vec<u8>) {
        self.doc.write_node(self.node, out);
    }
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    /// Finished containers' members, each container's contiguous.
    arena: Vec<Member>,
    /// Members of the containers being parsed, innermost last.
    stack: Vec<Member>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// One value at the current position (whitespace already skipped).
    fn value(&mut self, depth: u32) -> Option<Node> {
        let start = self.pos;
        match self.peek()? {
            b'{' => self.container(depth, true),
            b'[' => self.container(depth, false),
            b'"' => {
                self.string()?;
                Some(Node::Leaf(start as u32, self.pos as u32))
            }
            b'-' | b'0'..=b'9' => {
                self.number()?;
                Some(Node::Leaf(start as u32, self.pos as u32))
            }
            _ => {
                let rest = &self.input[start..];
                let n = [&b"true"[..], b"false", b"null"]
                    .into_iter()
                    .find(|l| rest.starts_with(l))?
                    .len();
                self.pos += n;
                Some(Node::Leaf(start as u32, self.pos as u32))
            }
        }
    }

    /// An object or an array; its members end up contiguous in the arena,
    /// an object's sorted by key.
    fn container(&mut self, depth: u32, object: bool) -> Option<Node> {
        if depth >= MAX_DEPTH {
            return None;
        }
        let close = if object { b'}' } else { b']' };
        self.pos += 1;
        let base = self.stack.len();
        self.ws();
        if !self.eat(close) {
            loop {
                let key = if object {
                    let s = self.pos + 1;
                    if self.peek() != Some(b'"') {
                        return None;
                    }
                    self.string()?;
                    let key = (s as u32, (self.pos - 1) as u32);
                    self.ws();
                    if !self.eat(b':') {
                        return None;
                    }
                    self.ws();
                    key
                } else {
                    (0, 0)
                };
                let node = self.value(depth + 1)?;
                self.stack.push(Member { key, node });
                self.ws();
                if self.eat(b',') {
                    self.ws();
                    continue;
                }
                if self.eat(close) {
                    break;
                }
                return None;
            }
        }
        let input = self.input;
        let members = &mut self.stack[base..];
        if object {
            members.sort_by(|a, b| {
                input[a.key.0 as usize..a.key.1 as usize]
                    .cmp(&input[b.key.0 as usize..b.key.1 as usize])
            });
        }
        let s = self.arena.len() as u32;
        self.arena.extend(self.stack.drain(base..));
        let e = self.arena.len() as u32;
        Some(if object {
            Node::Object(s, e)
        } else {
            Node::Array(s, e)
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> Option<String> {
        let o = Object::parse(s.as_bytes())?;
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
                            let ours = Object::parse(&doc).map(|o| {
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
        let o =
            Object::parse(br#"{"stream":true,"t":0,"t":0.5,"o":{"include_usage":true},"s":"x"}"#)
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
