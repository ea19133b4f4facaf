//! Property tests of the rule trie against a brute-force reference: over
//! thousands of random rule sets and requests (fixed-seed xorshift, so a
//! failure reproduces), [`Router::find`] returns exactly the rule the
//! reference picks — every rule matches the requests it should, and the
//! longest (then most literal, then lowest index) wins.

use super::*;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const WORDS: &[&str] = &["a", "b", "v1", "chat", "x-y"];
const METHODS: &[&str] = &["GET", "POST", "PUT"];

fn random_spec(rng: &mut Rng) -> RouteSpec {
    let depth = rng.below(4);
    let mut path = String::new();
    for i in 0..depth {
        path.push('/');
        if rng.chance(25) {
            path.push_str(&format!("{{p{i}}}"));
        } else {
            path.push_str(WORDS[rng.below(WORDS.len())]);
        }
    }
    if path.is_empty() || rng.chance(10) {
        path.push('/');
    }
    let methods = if rng.chance(60) {
        Vec::new()
    } else {
        (0..1 + rng.below(2))
            .map(|_| METHODS[rng.below(METHODS.len())].to_string())
            .collect()
    };
    let headers = if rng.chance(80) {
        Vec::new()
    } else {
        vec![("x-m".to_string(), ["a", "b"][rng.below(2)].to_string())]
    };
    RouteSpec {
        path,
        methods,
        headers,
    }
}

fn random_path(rng: &mut Rng, specs: &[Option<RouteSpec>]) -> String {
    // Often an instance of one of the rules, sometimes with a suffix.
    let mut path = String::new();
    if rng.chance(70) {
        if let Some(Some(s)) = specs.get(rng.below(specs.len().max(1))) {
            for seg in s.path.split('/').filter(|p| !p.is_empty()) {
                path.push('/');
                if seg.starts_with('{') {
                    path.push_str(WORDS[rng.below(WORDS.len())]);
                } else {
                    path.push_str(seg);
                }
            }
        }
    }
    for _ in 0..rng.below(3) {
        path.push('/');
        if !rng.chance(10) {
            path.push_str(WORDS[rng.below(WORDS.len())]);
        }
    }
    if path.is_empty() || rng.chance(10) {
        path.push('/');
    }
    path
}

/// The reference: try every rule on its own.
fn brute_force(
    specs: &[Option<RouteSpec>],
    method: &str,
    path: &str,
    header: Option<&str>,
) -> Option<(usize, usize)> {
    let req: Vec<&str> = path[1..].split('/').collect();
    let mut best: Option<((usize, usize, std::cmp::Reverse<usize>), usize)> = None;
    for (i, s) in specs.iter().enumerate() {
        let Some(s) = s else { continue };
        let segs = parse_rule_path(&s.path).unwrap();
        if segs.len() > req.len() && !(segs.is_empty()) {
            continue;
        }
        let mut matched = 0;
        let mut literals = 0;
        let mut ok = true;
        for (k, seg) in segs.iter().enumerate() {
            let r = req[k];
            match seg {
                _ if r.is_empty() => ok = false,
                Segment::Literal(l) if *l != r => ok = false,
                Segment::Literal(_) => literals += 1,
                Segment::Param(_) => {}
            }
            if !ok {
                break;
            }
            matched += 1 + r.len();
        }
        let method_ok = s.methods.is_empty() || s.methods.iter().any(|m| m == method);
        let headers_ok = s.headers.iter().all(|(_, v)| header == Some(v.as_str()));
        if !(ok && method_ok && headers_ok) {
            continue;
        }
        let key = (segs.len(), literals, std::cmp::Reverse(i));
        if best.is_none_or(|(b, _)| key > b) {
            best = Some((key, matched));
        }
    }
    best.map(|((_, _, std::cmp::Reverse(i)), m)| (i, m))
}

#[test]
fn trie_agrees_with_brute_force() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut matched = 0usize;
    let mut requests = 0usize;
    for _ in 0..1500 {
        let specs: Vec<Option<RouteSpec>> = (0..1 + rng.below(10))
            .map(|_| {
                if rng.chance(10) {
                    None
                } else {
                    Some(random_spec(&mut rng))
                }
            })
            .collect();
        let router = Router::new(specs.clone());
        for _ in 0..20 {
            let path = random_path(&mut rng, &specs);
            let method = METHODS[rng.below(METHODS.len())];
            let header = [None, Some("a"), Some("b")][rng.below(3)];
            let lookup = |name: &str| -> Option<&[u8]> {
                if name == "x-m" {
                    header.map(str::as_bytes)
                } else {
                    None
                }
            };
            let got = router
                .find(method.as_bytes(), path.as_bytes(), &lookup)
                .map(|m| (m.rule, m.matched_len));
            let want = brute_force(&specs, method, &path, header);
            assert_eq!(
                got, want,
                "{method} {path} x-m={header:?} with rules {specs:#?}"
            );
            if let Some((_, len)) = got {
                let rest = &path[len..];
                assert!(rest.is_empty() || rest.starts_with('/'), "{path} at {len}");
                matched += 1;
            }
            requests += 1;
        }
    }
    // The generator exercises both outcomes.
    assert!(
        matched > requests / 4 && matched < requests,
        "{matched} of {requests}"
    );
}

/// Every routable rule matches an instance of its own path (with any method
/// it allows), and whatever wins is at least as long as it.
#[test]
fn every_rule_matches_its_own_instances_and_longest_wins() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for _ in 0..1500 {
        let specs: Vec<Option<RouteSpec>> = (0..1 + rng.below(8))
            .map(|_| Some(random_spec(&mut rng)))
            .collect();
        let router = Router::new(specs.clone());
        for (i, s) in specs.iter().enumerate() {
            let s = s.as_ref().unwrap();
            let segs = parse_rule_path(&s.path).unwrap();
            let mut path = String::new();
            for seg in &segs {
                path.push('/');
                path.push_str(match seg {
                    Segment::Literal(l) => l,
                    Segment::Param(_) => "val",
                });
            }
            if rng.chance(50) {
                path.push_str("/tail");
            }
            if path.is_empty() {
                path.push('/');
            }
            let method = s.methods.first().map_or("GET", String::as_str);
            let value = s.headers.first().map(|(_, v)| v.as_bytes());
            let m = router
                .find(method.as_bytes(), path.as_bytes(), &|_| value)
                .unwrap_or_else(|| panic!("rule {i} {s:?} does not match {path}"));
            let winner = parse_rule_path(&specs[m.rule].as_ref().unwrap().path).unwrap();
            assert!(
                winner.len() >= segs.len(),
                "{path}: rule {} beat rule {i}",
                m.rule
            );
        }
    }
}
