//! No function in src/ is longer than `MAX_LINES` lines, counted from the
//! line with `fn` to the line with the body's closing brace. Test modules
//! (`#[cfg(test)] mod tests { ... }`, and the files of `#[cfg(test)] mod
//! tests;`) are not counted. Reads the sources only: no
//! build, no network.

use std::path::{Path, PathBuf};

const MAX_LINES: usize = 80;

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

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The source with comments, strings and char literals blanked to spaces
/// (newlines kept), so that braces and keywords in them do not count.
fn code_of(text: &str) -> Vec<char> {
    let s: Vec<char> = text.chars().collect();
    let mut out = s.clone();
    let blank = |out: &mut Vec<char>, from: usize, to: usize| {
        for c in out.iter_mut().take(to.min(s.len())).skip(from) {
            if *c != '\n' {
                *c = ' ';
            }
        }
    };
    let mut i = 0;
    while i < s.len() {
        let prev_ident = i > 0 && is_ident(s[i - 1]);
        match s[i] {
            '/' if s.get(i + 1) == Some(&'/') => {
                let end = (i..s.len()).find(|&j| s[j] == '\n').unwrap_or(s.len());
                blank(&mut out, i, end);
                i = end;
            }
            '/' if s.get(i + 1) == Some(&'*') => {
                let (mut j, mut depth) = (i + 2, 1);
                while j < s.len() && depth > 0 {
                    if s[j] == '/' && s.get(j + 1) == Some(&'*') {
                        depth += 1;
                        j += 1;
                    } else if s[j] == '*' && s.get(j + 1) == Some(&'/') {
                        depth -= 1;
                        j += 1;
                    }
                    j += 1;
                }
                blank(&mut out, i, j);
                i = j;
            }
            'r' if (!prev_ident || (i > 0 && s[i - 1] == 'b' && !(i > 1 && is_ident(s[i - 2]))))
                && matches!(s.get(i + 1), Some('"' | '#')) =>
            {
                let hashes = s[i + 1..].iter().take_while(|&&c| c == '#').count();
                if s.get(i + 1 + hashes) != Some(&'"') {
                    i += 1;
                    continue;
                }
                let mut j = i + 2 + hashes;
                while j < s.len() {
                    if s[j] == '"' && s[j + 1..].iter().take(hashes).filter(|&&c| c == '#').count() == hashes
                    {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                blank(&mut out, i, j);
                i = j;
            }
            '"' => {
                let mut j = i + 1;
                while j < s.len() && s[j] != '"' {
                    j += if s[j] == '\\' { 2 } else { 1 };
                }
                blank(&mut out, i, j + 1);
                i = j + 1;
            }
            '\'' => {
                // A char literal ('x', '\n', '\u{1F600}', '{'), or a lifetime.
                if s.get(i + 1) == Some(&'\\') {
                    let j = (i + 3..s.len()).find(|&j| s[j] == '\'').unwrap_or(s.len());
                    blank(&mut out, i, j + 1);
                    i = j + 1;
                } else if s.get(i + 2) == Some(&'\'') {
                    blank(&mut out, i, i + 3);
                    i += 3;
                } else {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// The index just past the block whose `{` is at `open`.
fn block_end(code: &[char], open: usize) -> usize {
    let mut depth = 0;
    for (j, &c) in code.iter().enumerate().skip(open) {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
    }
    code.len()
}

fn word_at(code: &[char], i: usize, word: &str) -> bool {
    let w: Vec<char> = word.chars().collect();
    code[i..].starts_with(&w)
        && (i == 0 || !is_ident(code[i - 1]))
        && !code.get(i + w.len()).is_some_and(|&c| is_ident(c))
}

/// The code with every `#[cfg(test)] mod name { ... }` blanked.
fn without_test_modules(mut code: Vec<char>) -> Vec<char> {
    let attr: Vec<char> = "#[cfg(test)]".chars().collect();
    let mut i = 0;
    while i + attr.len() <= code.len() {
        if code[i..].starts_with(&attr) {
            let mut j = i + attr.len();
            while j < code.len() && code[j].is_whitespace() {
                j += 1;
            }
            if word_at(&code, j, "mod") {
                if let Some(open) = (j..code.len()).find(|&k| code[k] == '{' || code[k] == ';') {
                    if code[open] == '{' {
                        let end = block_end(&code, open);
                        for c in &mut code[i..end] {
                            if *c != '\n' {
                                *c = ' ';
                            }
                        }
                        i = end;
                        continue;
                    }
                }
            }
        }
        i += 1;
    }
    code
}

/// (name, first line, length in lines) of every function with a body.
fn functions(text: &str) -> Vec<(String, usize, usize)> {
    let code = without_test_modules(code_of(text));
    let line_of = |i: usize| code[..i].iter().filter(|&&c| c == '\n').count() + 1;
    let mut found = Vec::new();
    for i in 0..code.len() {
        if !word_at(&code, i, "fn") {
            continue;
        }
        let mut j = i + 2;
        while j < code.len() && code[j].is_whitespace() {
            j += 1;
        }
        let name: String = code[j..].iter().take_while(|&&c| is_ident(c)).collect();
        if name.is_empty() {
            continue; // a function pointer type: `fn(u8) -> u8`
        }
        // The body's `{`, or the `;` of a declaration without one.
        let mut depth = 0i32;
        let mut open = None;
        for (k, &c) in code.iter().enumerate().skip(j) {
            match c {
                '(' | '[' => depth += 1,
                ')' | ']' => depth -= 1,
                ';' if depth == 0 => break,
                '{' if depth == 0 => {
                    open = Some(k);
                    break;
                }
                _ => {}
            }
        }
        if let Some(open) = open {
            let end = block_end(&code, open);
            let (first, last) = (line_of(i), line_of(end - 1));
            found.push((name, first, last - first + 1));
        }
    }
    found
}

/// The files of the test modules declared out of line: `#[cfg(test)]`
/// followed (after other attributes) by `mod name;`.
fn test_module_files(files: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).unwrap();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for (i, l) in lines.iter().enumerate() {
            if *l != "#[cfg(test)]" {
                continue;
            }
            let Some(decl) = lines[i + 1..].iter().find(|l| !l.starts_with("#[")) else {
                continue;
            };
            let Some(name) = decl.strip_prefix("mod ").and_then(|d| d.strip_suffix(';')) else {
                continue;
            };
            let dir = if f.ends_with("mod.rs") || f.ends_with("lib.rs") {
                f.parent().unwrap().to_path_buf()
            } else {
                f.with_extension("")
            };
            out.push(dir.join(format!("{name}.rs")));
            out.push(dir.join(name).join("mod.rs"));
        }
    }
    out
}

#[test]
fn no_function_is_longer_than_the_limit() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    let tests = test_module_files(&files);
    assert!(
        tests.iter().any(|t| files.contains(t)),
        "the scan recognises the out-of-line test modules"
    );
    files.retain(|f| !tests.contains(f));
    let mut long = Vec::new();
    let mut count = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (name, line, len) in functions(&text) {
            count += 1;
            if len > MAX_LINES {
                let rel = f.strip_prefix(root).unwrap().display().to_string();
                long.push(format!("{rel}:{line} fn {name}: {len} lines"));
            }
        }
    }
    assert!(count > 300, "the scan found the crate's functions ({count})");
    assert!(
        long.is_empty(),
        "functions over {MAX_LINES} lines (split them into named steps):\n{}",
        long.join("\n")
    );
}

#[test]
fn the_scanner_measures_bodies_and_skips_what_is_not_code() {
    let text = "fn a() {\n    let s = \"}}}\";\n    let c = '}';\n}\n\
                // fn commented() { }\n\
                trait T { fn decl(&self); fn def(&self) -> [u8; 2] { [0; 2] } }\n\
                fn b<'x>(p: fn(u8) -> u8, r: &'x str) -> u8 {\n    /* } */ let q = r#\"{\"#;\n    \
                p(1)\n}\n\
                #[cfg(test)]\nmod tests {\n    fn hidden() {\n    }\n}\n\
                fn c() { if true { } }\n";
    let got = functions(text);
    let names: Vec<(&str, usize, usize)> = got.iter().map(|(n, l, c)| (n.as_str(), *l, *c)).collect();
    assert_eq!(names, [("a", 1, 4), ("def", 6, 1), ("b", 7, 4), ("c", 16, 1)]);
}
