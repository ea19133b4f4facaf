//! Rule matching: methods, headers, `{param}` segments, a path prefix at a
//! `/` boundary; the most specific rule wins.
//!
//! The rule paths form a segment trie (literal children in a hash map keyed
//! by the segment's bytes, one `{param}` child per node). [`Router::find`]
//! walks the request path's segments through the trie, and every node it
//! reaches is a boundary prefix of the request path, so the rules ending
//! there are candidates. Among the candidates whose methods and headers
//! match, the one with more segments wins, then the one with more literal
//! segments, then the lower rule index. `find` does not allocate.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use crate::util::fnv::FnvHasher;

/// What a rule needs to match, as [`Router::new`] takes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteSpec {
    /// The rule path, e.g. `/v1` or `/v1/{model}/chat`; a trailing slash is
    /// ignored.
    pub path: String,
    /// Upper-case method tokens; empty: any method.
    pub methods: Vec<String>,
    /// Lower-case header name and the exact value it must have.
    pub headers: Vec<(String, String)>,
}

/// The result of [`Router::find`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMatch {
    /// Index of the rule (the index in the `specs` given to [`Router::new`]).
    pub rule: usize,
    /// Bytes of the request path consumed by the rule path;
    /// `path[matched_len..]` is `""` or starts with `/`. `0` for the rule `/`.
    pub matched_len: usize,
}

/// One segment of a rule path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment<'a> {
    Literal(&'a str),
    /// `{name}`: matches exactly one non-empty segment.
    Param(&'a str),
}

/// Parses and checks a rule path: it starts with `/`, has no `?`, `#`,
/// whitespace or control characters, no empty segment (a single trailing
/// slash is ignored), and every segment holding `{` or `}` is exactly
/// `{name}` with `name` an identifier (`[A-Za-z_][A-Za-z0-9_]*`) used once.
/// `/` gives no segments.
pub fn parse_rule_path(path: &str) -> Result<Vec<Segment<'_>>, String> {
    if !path.starts_with('/') {
        return Err("must start with '/'".into());
    }
    if let Some(c) = path
        .chars()
        .find(|&c| c == '?' || c == '#' || c.is_whitespace() || c.is_control())
    {
        return Err(format!("must not contain {c:?}"));
    }
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    let mut out = Vec::new();
    if trimmed.is_empty() {
        return Ok(out);
    }
    for seg in trimmed[1..].split('/') {
        if seg.is_empty() {
            return Err("must not contain an empty segment ('//')".into());
        }
        if seg.contains('{') || seg.contains('}') {
            let name = seg
                .strip_prefix('{')
                .and_then(|s| s.strip_suffix('}'))
                .filter(|n| is_identifier(n))
                .ok_or_else(|| {
                    format!("segment {seg:?}: a parameter is a whole segment '{{name}}'")
                })?;
            if out.contains(&Segment::Param(name)) {
                return Err(format!("parameter {{{name}}} used twice"));
            }
            out.push(Segment::Param(name));
        } else {
            out.push(Segment::Literal(seg));
        }
    }
    Ok(out)
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

type FnvMap<K, V> = HashMap<K, V, BuildHasherDefault<FnvHasher>>;

#[derive(Debug, Default)]
struct Node {
    literals: FnvMap<Box<[u8]>, u32>,
    param: Option<u32>,
    /// Rules ending here, ascending index.
    rules: Vec<u32>,
    /// Segments from the root.
    depth: u32,
    /// Literal (non-param) segments from the root.
    literal_count: u32,
}

#[derive(Debug)]
struct Entry {
    methods: Vec<Box<[u8]>>,
    headers: Vec<(String, Box<[u8]>)>,
}

/// Matches (method, path, headers) to a rule index.
#[derive(Debug)]
pub struct Router {
    nodes: Vec<Node>,
    /// Index = rule index; `None`: not routable.
    entries: Vec<Option<Entry>>,
}

impl Default for Router {
    fn default() -> Self {
        Router::new(Vec::new())
    }
}

#[derive(Clone, Copy)]
struct Best {
    depth: u32,
    literal_count: u32,
    rule: u32,
    matched_len: usize,
}

impl Router {
    /// Builds the trie. The index in `specs` is the rule index; `None` is a
    /// rule that is not routable (inactive). A spec whose path does not
    /// parse (see [`parse_rule_path`]) is not routable either (validation
    /// refuses such paths before this point).
    pub fn new(specs: Vec<Option<RouteSpec>>) -> Router {
        let mut nodes = vec![Node::default()];
        let mut entries = Vec::with_capacity(specs.len());
        for (index, spec) in specs.into_iter().enumerate() {
            let Some(spec) = spec else {
                entries.push(None);
                continue;
            };
            let Ok(segments) = parse_rule_path(&spec.path) else {
                log::warn!("rule {index}: invalid path {:?}, not routable", spec.path);
                entries.push(None);
                continue;
            };
            let mut at = 0usize;
            for seg in segments {
                let (depth, literal_count) = (nodes[at].depth + 1, nodes[at].literal_count);
                let next = match seg {
                    Segment::Literal(s) => match nodes[at].literals.get(s.as_bytes()) {
                        Some(&n) => n as usize,
                        None => {
                            nodes.push(Node {
                                depth,
                                literal_count: literal_count + 1,
                                ..Node::default()
                            });
                            let n = nodes.len() - 1;
                            nodes[at].literals.insert(s.as_bytes().into(), n as u32);
                            n
                        }
                    },
                    Segment::Param(_) => match nodes[at].param {
                        Some(n) => n as usize,
                        None => {
                            nodes.push(Node {
                                depth,
                                literal_count,
                                ..Node::default()
                            });
                            let n = nodes.len() - 1;
                            nodes[at].param = Some(n as u32);
                            n
                        }
                    },
                };
                at = next;
            }
            // Indices arrive in ascending order, so each node's list stays sorted.
            nodes[at].rules.push(index as u32);
            entries.push(Some(Entry {
                methods: spec
                    .methods
                    .iter()
                    .map(|m| m.to_ascii_uppercase().into_bytes().into())
                    .collect(),
                headers: spec
                    .headers
                    .into_iter()
                    .map(|(n, v)| (n.to_ascii_lowercase(), v.into_bytes().into()))
                    .collect(),
            }));
        }
        Router { nodes, entries }
    }

    /// The number of rules (routable or not) the router was built with.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The most specific routable rule matching the request, if any.
    /// `path` is the raw request path without the query; `header` looks up
    /// a request header by lower-case name (case-insensitively).
    pub fn find<'h>(
        &self,
        method: &[u8],
        path: &[u8],
        header: &dyn Fn(&str) -> Option<&'h [u8]>,
    ) -> Option<RouteMatch> {
        if path.first() != Some(&b'/') || self.nodes.is_empty() {
            return None;
        }
        let mut best = None;
        self.walk(0, path, 0, method, header, &mut best);
        best.map(|b| RouteMatch {
            rule: b.rule as usize,
            matched_len: b.matched_len,
        })
    }

    fn walk<'h>(
        &self,
        node: usize,
        path: &[u8],
        pos: usize,
        method: &[u8],
        header: &dyn Fn(&str) -> Option<&'h [u8]>,
        best: &mut Option<Best>,
    ) {
        let n = &self.nodes[node];
        for &rule in &n.rules {
            let better = match best {
                None => true,
                Some(b) => {
                    (n.depth, n.literal_count, std::cmp::Reverse(rule))
                        > (b.depth, b.literal_count, std::cmp::Reverse(b.rule))
                }
            };
            if !better {
                // Rules are ascending: later ones here cannot win either.
                break;
            }
            if self.accepts(rule as usize, method, header) {
                *best = Some(Best {
                    depth: n.depth,
                    literal_count: n.literal_count,
                    rule,
                    matched_len: pos,
                });
                break;
            }
        }
        if pos >= path.len() {
            return;
        }
        // path[pos] == b'/'
        let start = pos + 1;
        let end = path[start..]
            .iter()
            .position(|&b| b == b'/')
            .map_or(path.len(), |i| start + i);
        let seg = &path[start..end];
        if seg.is_empty() {
            return;
        }
        if let Some(&child) = n.literals.get(seg) {
            self.walk(child as usize, path, end, method, header, best);
        }
        if let Some(child) = n.param {
            self.walk(child as usize, path, end, method, header, best);
        }
    }

    fn accepts<'h>(
        &self,
        rule: usize,
        method: &[u8],
        header: &dyn Fn(&str) -> Option<&'h [u8]>,
    ) -> bool {
        let Some(Some(e)) = self.entries.get(rule) else {
            return false;
        };
        (e.methods.is_empty() || e.methods.iter().any(|m| &**m == method))
            && e.headers
                .iter()
                .all(|(name, value)| header(name) == Some(&**value))
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(path: &str, methods: &[&str]) -> Option<RouteSpec> {
        Some(RouteSpec {
            path: path.into(),
            methods: methods.iter().map(|m| m.to_string()).collect(),
            headers: Vec::new(),
        })
    }

    fn find(r: &Router, method: &str, path: &str) -> Option<(usize, usize)> {
        r.find(method.as_bytes(), path.as_bytes(), &|_| None)
            .map(|m| (m.rule, m.matched_len))
    }

    #[test]
    fn boundary() {
        let r = Router::new(vec![spec("/v1", &[])]);
        assert_eq!(find(&r, "GET", "/v1"), Some((0, 3)));
        assert_eq!(find(&r, "GET", "/v1/"), Some((0, 3)));
        assert_eq!(find(&r, "GET", "/v1/chat/x"), Some((0, 3)));
        assert_eq!(find(&r, "GET", "/v1x"), None);
        assert_eq!(find(&r, "GET", "/v"), None);
        assert_eq!(find(&r, "GET", "/"), None);
        assert_eq!(find(&r, "GET", "/v2/v1"), None);
        assert_eq!(find(&r, "GET", "v1"), None);
        assert_eq!(find(&r, "GET", ""), None);
    }

    #[test]
    fn root_matches_everything() {
        let r = Router::new(vec![spec("/", &[]), spec("/v1", &[])]);
        assert_eq!(find(&r, "GET", "/"), Some((0, 0)));
        assert_eq!(find(&r, "GET", "/anything/else"), Some((0, 0)));
        assert_eq!(find(&r, "GET", "/v1x"), Some((0, 0)));
        assert_eq!(find(&r, "GET", "/v1/x"), Some((1, 3)));
    }

    #[test]
    fn longest_wins_regardless_of_order() {
        let r = Router::new(vec![
            spec("/v1", &[]),
            spec("/v1/chat/completions", &[]),
            spec("/v1/chat", &[]),
        ]);
        assert_eq!(find(&r, "POST", "/v1/chat/completions"), Some((1, 20)));
        assert_eq!(find(&r, "POST", "/v1/chat/completionsx"), Some((2, 8)));
        assert_eq!(find(&r, "POST", "/v1/chat"), Some((2, 8)));
        assert_eq!(find(&r, "POST", "/v1/models"), Some((0, 3)));
    }

    #[test]
    fn literal_beats_param_and_params_match_one_segment() {
        let r = Router::new(vec![
            spec("/v1/{model}/chat", &[]),
            spec("/v1/gpt/chat", &[]),
            spec("/v1/{model}", &[]),
        ]);
        assert_eq!(find(&r, "GET", "/v1/gpt/chat"), Some((1, 12)));
        assert_eq!(find(&r, "GET", "/v1/llama/chat"), Some((0, 14)));
        assert_eq!(find(&r, "GET", "/v1/llama/chat/more"), Some((0, 14)));
        assert_eq!(find(&r, "GET", "/v1/llama"), Some((2, 9)));
        assert_eq!(find(&r, "GET", "/v1/llama/other"), Some((2, 9)));
        // A param never matches an empty segment.
        assert_eq!(find(&r, "GET", "/v1/"), None);
        assert_eq!(find(&r, "GET", "/v1//chat"), None);
        // More segments beat more literals.
        let r = Router::new(vec![spec("/a/b", &[]), spec("/{x}/{y}/{z}", &[])]);
        assert_eq!(find(&r, "GET", "/a/b/c"), Some((1, 6)));
        assert_eq!(find(&r, "GET", "/a/b"), Some((0, 4)));
    }

    #[test]
    fn lower_index_wins_a_tie() {
        let r = Router::new(vec![spec("/a/{x}", &[]), spec("/a/{y}", &[])]);
        assert_eq!(find(&r, "GET", "/a/1"), Some((0, 4)));
        let r = Router::new(vec![spec("/{x}/b", &[]), spec("/a/{y}", &[])]);
        assert_eq!(find(&r, "GET", "/a/b"), Some((0, 4)));
    }

    #[test]
    fn methods() {
        let r = Router::new(vec![spec("/v1", &["POST"]), spec("/v1", &["GET", "head"])]);
        assert_eq!(find(&r, "POST", "/v1"), Some((0, 3)));
        assert_eq!(find(&r, "GET", "/v1"), Some((1, 3)));
        assert_eq!(find(&r, "HEAD", "/v1"), Some((1, 3)));
        assert_eq!(find(&r, "DELETE", "/v1"), None);
        assert_eq!(find(&r, "post", "/v1"), None, "methods are case-sensitive");
        // A shorter rule with the method takes over.
        let r = Router::new(vec![spec("/v1/chat", &["POST"]), spec("/v1", &["GET"])]);
        assert_eq!(find(&r, "GET", "/v1/chat"), Some((1, 3)));
    }

    #[test]
    fn headers() {
        let mut a = spec("/v1", &[]).unwrap();
        a.headers = vec![("X-Model".into(), "a".into())];
        let mut b = spec("/v1", &[]).unwrap();
        b.headers = vec![
            ("x-model".into(), "b".into()),
            ("x-tier".into(), "pro".into()),
        ];
        let r = Router::new(vec![Some(a), Some(b), spec("/", &[])]);
        let get = |hs: &'static [(&'static str, &'static str)]| {
            r.find(b"GET", b"/v1/x", &move |name: &str| {
                hs.iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.as_bytes())
            })
            .map(|m| m.rule)
        };
        assert_eq!(get(&[("X-MODEL", "a")]), Some(0));
        assert_eq!(get(&[("x-model", "b")]), Some(2));
        assert_eq!(get(&[("x-model", "b"), ("x-tier", "pro")]), Some(1));
        assert_eq!(get(&[("x-model", "A")]), Some(2), "values are exact");
        assert_eq!(get(&[]), Some(2));
    }

    #[test]
    fn trailing_slash_in_rule_ignored() {
        let r = Router::new(vec![spec("/v1/", &[])]);
        assert_eq!(find(&r, "GET", "/v1"), Some((0, 3)));
        assert_eq!(find(&r, "GET", "/v1/chat"), Some((0, 3)));
    }

    #[test]
    fn inactive_rules_skipped_indices_stable() {
        let r = Router::new(vec![spec("/v1/chat", &[]), None, spec("/v1", &[])]);
        assert_eq!(r.len(), 3);
        assert_eq!(find(&r, "GET", "/v1/chat"), Some((0, 8)));
        let r = Router::new(vec![None, spec("/v1", &[])]);
        assert_eq!(find(&r, "GET", "/v1/chat"), Some((1, 3)));
        assert_eq!(Router::default().len(), 0);
        assert_eq!(find(&Router::default(), "GET", "/"), None);
    }

    #[test]
    fn raw_bytes_no_decoding() {
        let r = Router::new(vec![spec("/a%2Fb", &[])]);
        assert_eq!(find(&r, "GET", "/a%2Fb/c"), Some((0, 6)));
        assert_eq!(find(&r, "GET", "/a/b"), None);
    }

    #[test]
    fn parse_rule_path_errors() {
        assert!(parse_rule_path("/").unwrap().is_empty());
        assert_eq!(
            parse_rule_path("/v1/{model}/").unwrap(),
            vec![Segment::Literal("v1"), Segment::Param("model")]
        );
        for bad in [
            "", "v1", "/v1?x", "/v1#x", "/a//b", "/a b", "/{", "/{}", "/{1x}", "/x{y}", "/{a}/{a}",
            "//",
        ] {
            assert!(parse_rule_path(bad).is_err(), "{bad:?} accepted");
        }
    }

    /// Reference matcher: straightforward and slow.
    fn naive(
        specs: &[Option<(Vec<Segment<'_>>, RouteSpec)>],
        method: &str,
        path: &str,
    ) -> Option<(usize, usize)> {
        let mut best: Option<(usize, usize, usize, usize)> = None; // depth, lits, rule, len
        let req: Vec<&str> = path[1..].split('/').collect();
        let req = if path == "/" { vec![] } else { req };
        for (i, s) in specs.iter().enumerate() {
            let Some((segs, s)) = s else { continue };
            if !s.methods.is_empty() && !s.methods.iter().any(|m| m == method) {
                continue;
            }
            if req.len() < segs.len() {
                continue;
            }
            let mut ok = true;
            let mut len = 0;
            for (k, seg) in segs.iter().enumerate() {
                ok &= match seg {
                    Segment::Literal(l) => *l == req[k],
                    Segment::Param(_) => !req[k].is_empty(),
                };
                len += 1 + req[k].len();
            }
            if !ok {
                continue;
            }
            let lits = segs
                .iter()
                .filter(|s| matches!(s, Segment::Literal(_)))
                .count();
            let cand = (segs.len(), lits, i, len);
            let better = match best {
                None => true,
                Some(b) => {
                    (cand.0, cand.1, std::cmp::Reverse(cand.2)) > (b.0, b.1, std::cmp::Reverse(b.2))
                }
            };
            if better {
                best = Some(cand);
            }
        }
        best.map(|b| (b.2, b.3))
    }

    #[test]
    fn ten_thousand_rules() {
        let mut specs = Vec::new();
        for i in 0..10_000 {
            let path = match i % 5 {
                0 => format!("/svc{i}"),
                1 => format!("/svc{}/v1/chat", i - 1),
                2 => format!("/svc{}/{{model}}/x", i - 2),
                3 => format!("/t{}/{{a}}", i % 97),
                _ => format!("/{{a}}/p{}", i % 89),
            };
            let methods: &[&str] = if i % 7 == 0 { &["POST"] } else { &[] };
            let active = i % 11 != 0;
            specs.push(if active { spec(&path, methods) } else { None });
        }
        let r = Router::new(specs.clone());
        assert_eq!(r.len(), 10_000);
        let parsed: Vec<_> = specs
            .iter()
            .map(|s| {
                s.as_ref()
                    .map(|s| (parse_rule_path(&s.path).unwrap(), s.clone()))
            })
            .collect();
        // Deterministic pseudo-random requests, checked against the naive matcher.
        let mut x: u64 = 0x1234_5678;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let words = ["v1", "chat", "x", "gpt", "", "p3", "p88", "t5", "svc"];
        let mut hits = 0;
        for _ in 0..3000 {
            let mut path = String::new();
            let first = next() % 4;
            path.push('/');
            match first {
                0 => path.push_str(&format!("svc{}", next() % 10_005)),
                1 => path.push_str(&format!("t{}", next() % 100)),
                2 => path.push_str(words[(next() % words.len() as u64) as usize]),
                _ => path.push_str(&format!("svc{}", (next() % 2000) * 5)),
            }
            for _ in 0..(next() % 4) {
                path.push('/');
                path.push_str(words[(next() % words.len() as u64) as usize]);
            }
            let method = if next() % 2 == 0 { "GET" } else { "POST" };
            let want = naive(&parsed, method, &path);
            hits += want.is_some() as usize;
            assert_eq!(find(&r, method, &path), want, "{method} {path}");
        }
        assert!(hits > 1000, "too few matching requests generated: {hits}");
        assert_eq!(find(&r, "GET", "/svc5/v1/chat/completions"), Some((6, 13)));
        assert_eq!(find(&r, "POST", "/svc5/gpt/x"), Some((7, 11)));
        assert_eq!(
            find(&r, "GET", "/svc5/gpt/x"),
            Some((5, 5)),
            "rule 7 is POST only"
        );
        assert_eq!(find(&r, "GET", "/svc5/gpt"), Some((5, 5)));
    }
}
