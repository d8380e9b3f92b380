//! The crate's layering: every module's `crate::` references go only to its
//! own layer or below, and the modules import one another without a cycle.
//! The layer table is the one in src/lib.rs's documentation (its rows
//! `//! | N | layer | module, module |`), so the documentation and this check
//! cannot disagree. Reads the sources only: no build, no network.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Module -> (layer number, layer name), from lib.rs's table.
fn layer_table() -> BTreeMap<String, (u32, String)> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let mut table = BTreeMap::new();
    for line in lib.lines() {
        let Some(row) = line.strip_prefix("//! |") else {
            continue;
        };
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let Some(n) = cells.first().and_then(|c| c.parse::<u32>().ok()) else {
            continue;
        };
        for m in cells[2].split(',').map(|m| m.trim().trim_matches('`')) {
            if !m.is_empty() {
                table.insert(m.to_string(), (n, cells[1].to_string()));
            }
        }
    }
    assert!(table.len() > 5, "src/lib.rs documents the layer table");
    table
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file under src/ belongs to (None for lib.rs).
fn module_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).unwrap();
    let first = rel
        .components()
        .next()?
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    if first == "lib.rs" {
        return None;
    }
    Some(first.trim_end_matches(".rs").to_string())
}

/// The top-level modules named by `crate::x` and `crate::{x, y::z}` in `code`.
fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue; // `$crate::` or a longer name ending in "crate"
        }
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of the group: split at commas outside nested braces.
            let mut depth = 0;
            let mut start = 0;
            for (k, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        refs.insert(ident(group[start..k].trim()));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        refs.insert(ident(group[start..k].trim()));
                        start = k + 1;
                    }
                    _ => {}
                }
            }
        } else {
            refs.insert(ident(rest));
        }
    }
    refs.remove("");
    refs
}

/// The code of a file without its `//` comments (doc comments mention modules freely).
fn code_of(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Module -> the other top-level modules it references.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let Some(m) = module_of(&f) else { continue };
        let text = std::fs::read_to_string(&f).unwrap();
        let refs = crate_refs(&code_of(&text));
        let entry = graph.entry(m.clone()).or_default();
        entry.extend(refs.into_iter().filter(|r| *r != m));
    }
    graph
}

#[test]
fn modules_import_only_from_their_layer_or_below() {
    let table = layer_table();
    let graph = imports();
    let mut wrong = Vec::new();
    for (m, refs) in &graph {
        let Some((lm, lname)) = table.get(m) else {
            wrong.push(format!("module {m} is in no layer of src/lib.rs's table"));
            continue;
        };
        for r in refs {
            match table.get(r) {
                None => wrong.push(format!("{m} refers to crate::{r}, which is in no layer")),
                Some((lr, rname)) if lr > lm => wrong.push(format!(
                    "{m} (layer {lm}, {lname}) imports {r} (layer {lr}, {rname}), a layer above it"
                )),
                Some(_) => {}
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn modules_import_one_another_without_a_cycle() {
    let graph = imports();
    // Depth-first search; a back edge is a cycle.
    fn visit<'a>(
        m: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<String> {
        if let Some(i) = path.iter().position(|p| *p == m) {
            return Some(format!("{} -> {m}", path[i..].join(" -> ")));
        }
        if !done.insert(m) {
            return None;
        }
        path.push(m);
        for r in graph.get(m).into_iter().flatten() {
            if let Some(c) = visit(r, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        if let Some(cycle) = visit(m, &graph, &mut Vec::new(), &mut done) {
            panic!("import cycle: {cycle}");
        }
    }
}

#[test]
fn the_reference_parser_sees_every_form() {
    let code = "use crate::a::B;\nuse crate::{b, c::{D, E}, d::f};\nlet x = crate::e::g();\n$crate::h!();\nmycrate::i;";
    let got: Vec<String> = crate_refs(code).into_iter().collect();
    assert_eq!(got, ["a", "b", "c", "d", "e"]);
}
