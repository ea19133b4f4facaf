//! Checks the layer table in `lib.rs` against the code: every `crate::`,
//! `super::` and `self::` path of every file under `src/` (in `use` trees
//! and inline) must reach a module of the same or a lower layer, and no two
//! files may reach each other through such paths, directly or around a
//! circle.
//!
//! A path is resolved to the file of its longest module prefix; a name that
//! file re-exports with `pub use` is followed to the file that defines it.
//! Two kinds of edge are left out: a parent's `mod child;` and `pub use
//! child::…` (declaring and re-exporting its own children), and bare child
//! paths inside a parent (`exchange::run` in `proxy/mod.rs`), which are how a
//! module drives its own parts.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

/// `src/`-relative path → source text, for every file of the library: from
/// `lib.rs` along its `mod name;` declarations (the binary's own modules,
/// declared in `main.rs`, are not the library's).
fn sources() -> BTreeMap<String, String> {
    fn visit(root: &Path, file: &str, out: &mut BTreeMap<String, String>) {
        let path = root.join(file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let code = code_only(&text);
        out.insert(file.to_string(), text);
        // Children of `a/mod.rs` and `lib.rs` sit beside them; of `a/b.rs`, in `a/b/`.
        let dir = match file.rsplit_once('/') {
            _ if file == "lib.rs" => String::new(),
            Some((dir, "mod.rs")) => format!("{dir}/"),
            _ => format!("{}/", file.trim_end_matches(".rs")),
        };
        for name in declared_files(&code) {
            let flat = format!("{dir}{name}.rs");
            let nested = format!("{dir}{name}/mod.rs");
            let child = if root.join(&flat).exists() {
                flat
            } else {
                nested
            };
            visit(root, &child, out);
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    visit(&root, "lib.rs", &mut out);
    out
}

/// Where `word` starts in `code` as a word of its own (not the tail of a
/// longer name, nor a path segment after `::`).
fn words<'c>(code: &'c str, word: &'c str) -> impl Iterator<Item = usize> + 'c {
    code.match_indices(word)
        .map(|(at, _)| at)
        .filter(move |&at| {
            !code[..at]
                .chars()
                .next_back()
                .is_some_and(|c| is_ident(c) || c == ':')
        })
}

/// `mod name` items: where the name ends and the name.
fn mod_items(code: &str) -> Vec<(usize, String)> {
    words(code, "mod ")
        .filter_map(|at| {
            let rest = code[at + 4..].trim_start();
            let len = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
            (len > 0).then(|| (code.len() - rest.len() + len, rest[..len].to_string()))
        })
        .collect()
}

/// The names of `mod name;` declarations (modules in files of their own).
fn declared_files(code: &str) -> Vec<String> {
    mod_items(code)
        .into_iter()
        .filter(|(end, _)| code[*end..].trim_start().starts_with(';'))
        .map(|(_, name)| name)
        .collect()
}

/// The module path of a file: `config/mod.rs` → `config`, `lib.rs` → ``.
fn module_of(file: &str) -> Vec<String> {
    let stem = file.strip_suffix(".rs").unwrap_or(file);
    let mut parts: Vec<String> = stem.split('/').map(str::to_string).collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The code without comments, and with every string and char literal
/// emptied (so neither can contain a path).
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let prev_ident = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == b'r' && !prev_ident && raw_string_start(&b[i..]).is_some() {
            let (hashes, open) = raw_string_start(&b[i..]).expect("checked");
            i += open;
            let mut close = vec![b'"'];
            close.extend(std::iter::repeat_n(b'#', hashes));
            while i < b.len() && !b[i..].starts_with(&close) {
                i += 1;
            }
            i += close.len();
            out.push_str("\"\"");
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == b'\'' {
            // A char literal ('x', '\n', '\u{..}'), else a lifetime.
            let len = if b.get(i + 1) == Some(&b'\\') {
                b[i + 2..].iter().position(|&x| x == b'\'').map(|p| p + 3)
            } else {
                let ch = text[i + 1..].chars().next().map_or(1, char::len_utf8);
                (b.get(i + 1 + ch) == Some(&b'\'')).then_some(ch + 2)
            };
            match len {
                Some(n) => {
                    i += n;
                    out.push_str("' '");
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            let ch = text[i..].chars().next().expect("in bounds");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// `r"`, `r#"`, …: the number of `#`s and the opening's length.
fn raw_string_start(b: &[u8]) -> Option<(usize, usize)> {
    let hashes = b[1..].iter().take_while(|&&x| x == b'#').count();
    (b.get(1 + hashes) == Some(&b'"')).then_some((hashes, hashes + 2))
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The `use` declarations of `code`: (is `pub`, the tree's text).
fn use_items(code: &str) -> Vec<(bool, String, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    let mut from = 0;
    for at in words(code, "use ") {
        if at < from {
            continue;
        }
        let Some(end) = code[at..].find(';') else {
            break;
        };
        let before = code[..at].trim_end();
        // `pub use` or `pub(crate) use`, `pub(super) use`, …
        let pub_at = before.rfind("pub").filter(|&p| {
            let tail = before[p + 3..].trim();
            tail.is_empty() || tail.starts_with('(') && tail.ends_with(')') && !tail.contains(';')
        });
        let public = pub_at.is_some();
        let start = pub_at.unwrap_or(at);
        out.push((
            public,
            code[at + 4..at + end].to_string(),
            start..at + end + 1,
        ));
        from = at + end + 1;
    }
    out
}

/// Expands a use tree (`a::{b, c::{d, e}}`) into its paths.
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = tree.find('{') else {
        return vec![tree];
    };
    let close = tree.rfind('}').unwrap_or(tree.len());
    let prefix = &tree[..open];
    let mut parts = Vec::new();
    let (mut depth, mut cur) = (0, String::new());
    for ch in tree[open + 1..close].chars() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        if ch == ',' && depth == 0 {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(ch);
        }
    }
    parts.push(cur);
    parts
        .iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| expand(p).into_iter().map(|q| format!("{prefix}{q}")))
        .collect()
}

/// Inline `crate::…`, `super::…` and `self::…` paths (and where each
/// starts) outside `use` items.
fn inline_paths(code: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for root in ["crate", "super", "self"] {
        for at in words(code, root) {
            let mut path = root.to_string();
            let mut rest = &code[at + root.len()..];
            while let Some(r) = rest.trim_start().strip_prefix("::") {
                let r = r.trim_start();
                let len = r.find(|c: char| !is_ident(c)).unwrap_or(r.len());
                if len == 0 {
                    break;
                }
                path.push_str("::");
                path.push_str(&r[..len]);
                rest = &r[len..];
            }
            if path.contains("::") {
                out.push((at, path));
            }
        }
    }
    out
}

/// Inline modules (`mod tests { … }`): their span and name.
fn inline_mods(code: &str) -> Vec<(std::ops::Range<usize>, String)> {
    let mut out = Vec::new();
    for (end, name) in mod_items(code) {
        if !code[end..].trim_start().starts_with('{') {
            continue;
        }
        let open = end + code[end..].find('{').expect("checked");
        let mut depth = 0;
        let mut close = code.len();
        for (i, c) in code[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        close = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.push((open..close, name));
    }
    out
}

/// The module at `pos` of a file of module `base`: inside any inline
/// modules that hold `pos`.
fn module_at(
    base: &[String],
    mods: &[(std::ops::Range<usize>, String)],
    pos: usize,
) -> Vec<String> {
    let mut module = base.to_vec();
    for (span, name) in mods {
        if span.contains(&pos) {
            module.push(name.clone());
        }
    }
    module
}

struct Crate {
    /// Module path → file.
    modules: HashMap<Vec<String>, String>,
    /// Module path → (name it re-exports → the module defining it).
    reexports: HashMap<Vec<String>, HashMap<String, Vec<String>>>,
}

impl Crate {
    /// `path` (as written in `module`) made absolute: `crate`, `super` and
    /// `self` replaced; `None` for paths into other crates.
    fn absolute(module: &[String], path: &str) -> Option<Vec<String>> {
        let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
        let (mut base, mut rest): (Vec<String>, &[&str]) = match segs.first() {
            Some(&"crate") => (Vec::new(), &segs[1..]),
            Some(&"self") => (module.to_vec(), &segs[1..]),
            Some(&"super") => (module.to_vec(), &segs[..]),
            _ => return None,
        };
        while rest.first() == Some(&"super") {
            base.pop();
            rest = &rest[1..];
        }
        base.extend(rest.iter().map(|s| s.to_string()));
        if base.last().is_some_and(|s| s == "self") {
            base.pop();
        }
        Some(base)
    }

    /// The module path a path lands in (re-exports followed once).
    fn resolve(&self, segs: &[String]) -> Option<Vec<String>> {
        let n = (0..=segs.len())
            .rev()
            .find(|&n| self.modules.contains_key(&segs[..n]))?;
        let found = segs[..n].to_vec();
        if let Some(name) = segs.get(n) {
            if let Some(target) = self.reexports.get(&found).and_then(|r| r.get(name)) {
                return Some(target.clone());
            }
        }
        Some(found)
    }
}

/// File → files it reaches.
fn edges(files: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<(String, String)>> {
    let mut krate = Crate {
        modules: HashMap::new(),
        reexports: HashMap::new(),
    };
    for file in files.keys() {
        krate.modules.insert(module_of(file), file.clone());
    }
    let code: BTreeMap<&String, String> = files.iter().map(|(f, t)| (f, code_only(t))).collect();
    for (file, code) in &code {
        let module = module_of(file);
        for (_, tree, _) in use_items(code).into_iter().filter(|u| u.0) {
            for path in expand(&tree) {
                let path = path.split(" as ").next().unwrap_or("").to_string();
                let path = if path.starts_with("crate::")
                    || path.starts_with("super::")
                    || path.starts_with("self::")
                {
                    path
                } else {
                    format!("self::{path}")
                };
                let Some(mut segs) = Crate::absolute(&module, &path) else {
                    continue;
                };
                let Some(name) = segs.pop() else { continue };
                if let Some(target) = krate.resolve(&segs) {
                    if target != module {
                        krate
                            .reexports
                            .entry(module.clone())
                            .or_default()
                            .insert(name, target);
                    }
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    for (file, code) in &code {
        let module = module_of(file);
        let mods = inline_mods(code);
        let parent_file = file.ends_with("mod.rs") || *file == "lib.rs";
        let mut paths = Vec::new();
        let mut rest = code.clone();
        for (public, tree, span) in use_items(code).into_iter().rev() {
            // Blanked to the same length, so positions stay valid.
            rest.replace_range(span.clone(), &" ".repeat(span.len()));
            if public && parent_file {
                continue;
            }
            for p in expand(&tree) {
                paths.push((span.start, p.split(" as ").next().unwrap_or("").to_string()));
            }
        }
        paths.extend(inline_paths(&rest));
        let mut reached = BTreeSet::new();
        for (pos, path) in paths {
            let here = module_at(&module, &mods, pos);
            let Some(segs) = Crate::absolute(&here, &path) else {
                continue;
            };
            let Some(target) = krate.resolve(&segs) else {
                continue;
            };
            if target != module {
                reached.insert((krate.modules[&target].clone(), path));
            }
        }
        out.insert((*file).clone(), reached);
    }
    out
}

/// The layer table of `lib.rs`: module path → layer.
fn table(lib: &str) -> Vec<(Vec<String>, u32)> {
    let mut out = Vec::new();
    for line in lib.lines() {
        let Some(row) = line.strip_prefix("//! |") else {
            continue;
        };
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let Ok(layer) = cells[0].parse::<u32>() else {
            continue;
        };
        let modules = cells.get(2).copied().unwrap_or("");
        for m in modules.split(',') {
            let m = m.trim().trim_matches('`');
            if !m.is_empty() {
                out.push((m.split("::").map(str::to_string).collect(), layer));
            }
        }
    }
    out
}

fn layer_of(table: &[(Vec<String>, u32)], module: &[String]) -> Option<(u32, String)> {
    table
        .iter()
        .filter(|(m, _)| module.starts_with(m))
        .max_by_key(|(m, _)| m.len())
        .map(|(m, l)| (*l, m.join("::")))
}

/// The strongly connected components with more than one file.
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Tarjan's algorithm, iterative enough for a few hundred files.
    struct State<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: HashMap<&'g str, usize>,
        low: HashMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        graph,
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn every_edge_goes_down_the_layer_table() {
    let files = sources();
    assert!(files.len() > 50, "the library's files were not found");
    let table = table(&files["lib.rs"]);
    assert!(table.len() > 10, "the layer table in lib.rs was not found");
    let edges = edges(&files);
    let mut wrong = Vec::new();
    for (file, reached) in &edges {
        if file == "lib.rs" || file == "layers.rs" {
            continue;
        }
        let Some((from, from_entry)) = layer_of(&table, &module_of(file)) else {
            wrong.push(format!(
                "src/{file}: its module is in no layer of lib.rs's table"
            ));
            continue;
        };
        for (target, path) in reached {
            let Some((to, to_entry)) = layer_of(&table, &module_of(target)) else {
                continue; // reported as its own file
            };
            if to > from {
                wrong.push(format!(
                    "src/{file} (`{from_entry}`, layer {from}) uses `{path}` (src/{target}, `{to_entry}`, layer {to})"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "edges the layer table does not allow:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_files_reach_each_other() {
    let files = sources();
    let graph: BTreeMap<String, BTreeSet<String>> = edges(&files)
        .into_iter()
        .map(|(f, r)| (f, r.into_iter().map(|(t, _)| t).collect()))
        .collect();
    let found = circles(&graph);
    let shown: Vec<String> = found
        .iter()
        .map(|c| {
            let inside: BTreeSet<&String> = c.iter().collect();
            let links: Vec<String> = c
                .iter()
                .flat_map(|a| {
                    graph[a]
                        .iter()
                        .filter(|b| inside.contains(b))
                        .map(move |b| format!("  src/{a} -> src/{b}"))
                })
                .collect();
            format!("{}\n{}", c.join(" "), links.join("\n"))
        })
        .collect();
    assert!(
        found.is_empty(),
        "import circles between files:\n{}",
        shown.join("\n")
    );
}

/// The checker itself: it must see the paths a real file writes.
#[test]
fn the_parser_finds_use_trees_and_inline_paths() {
    let code = code_only(
        "use crate::{a::{B, c::D}, e};\n// crate::not::this\nlet s = \"crate::nor::this\";\nfn f<'a>(x: &'a u8) -> char { let _ = super::g::h(); 'c' }\n",
    );
    let uses: Vec<String> = use_items(&code)
        .into_iter()
        .flat_map(|(_, t, _)| expand(&t))
        .collect();
    assert_eq!(uses, ["crate::a::B", "crate::a::c::D", "crate::e"]);
    let inline: Vec<String> = inline_paths(&code).into_iter().map(|(_, p)| p).collect();
    assert!(inline.contains(&"super::g::h".to_string()), "{inline:?}");
    assert!(!inline
        .iter()
        .any(|p| p.contains("not") || p.contains("nor")));
    let code = code_only("mod a;\nmod tests {\n    use super::*;\n}\n");
    assert_eq!(declared_files(&code), ["a"]);
    let mods = inline_mods(&code);
    assert_eq!(mods.len(), 1);
    let inside = code.find("super").expect("present");
    let base = ["x".to_string()];
    assert_eq!(module_at(&base, &mods, inside), ["x", "tests"]);
    let table = table("//! | 3 | x | `a::b`, `c` |\n//! | 1 | y | `a` |\n");
    let a_b_d = ["a", "b", "d"].map(String::from);
    assert_eq!(layer_of(&table, &a_b_d), Some((3, "a::b".to_string())));
    assert_eq!(
        layer_of(&table, &["a".to_string()]),
        Some((1, "a".to_string()))
    );
}
