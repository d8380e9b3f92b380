//! IMAP BODYSTRUCTURE (RFC 3501 section 7.4.2) as a pre-order list of
//! [`BodyPart`] nodes with IMAP section numbers, so a caller can show a
//! message's parts (a 20 MB attachment's name and size) without fetching
//! them, then fetch one by its section.
//!
//! Iterative: the tree is walked with an explicit stack, and the values it
//! reads were already bounded to `parse::MAX_DEPTH` levels by the response
//! parser, so no input reaches the thread's stack limit. At most
//! [`MAX_NODES`] nodes are kept; a larger structure is PROTOCOL. Anything
//! malformed inside a node (a missing field, a number that is not one)
//! gives empty fields, never a panic.

use super::parse::Value;
use crate::parsed::{decode_params, BodyPart};
use crate::result::c_string;
use crate::status::{Error, Result};

/// Most nodes one message's structure may have.
pub const MAX_NODES: usize = 10_000;

/// What is still to be turned into a node.
struct Pending<'a> {
    body: &'a [Value],
    section: String,
    /// Children's section numbers are `prefix.N` (just `N` when empty).
    prefix: String,
    depth: u32,
    parent: Option<usize>,
}

fn child_section(prefix: &str, n: usize) -> String {
    if prefix.is_empty() {
        n.to_string()
    } else {
        format!("{prefix}.{n}")
    }
}

fn lower_text(v: Option<&Value>) -> String {
    v.and_then(Value::text).unwrap_or_default().to_ascii_lowercase()
}

/// A parameter list `("name" "value" ...)`, decoded (RFC 2231, RFC 2047).
fn params(v: Option<&Value>) -> Vec<(String, String)> {
    let Some(l) = v.and_then(Value::list) else {
        return Vec::new();
    };
    let raw: Vec<(String, String)> = l
        .chunks(2)
        .filter_map(|kv| Some((kv.first()?.text()?, kv.get(1)?.text()?)))
        .collect();
    decode_params(&raw)
}

/// A disposition `("attachment" ("filename" "x"))`: its type and parameters.
fn disposition(v: Option<&Value>) -> (String, Vec<(String, String)>) {
    match v.and_then(Value::list) {
        Some(d) => (lower_text(d.first()), params(d.get(1))),
        None => (String::new(), Vec::new()),
    }
}

fn find<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// Parses a BODYSTRUCTURE value into its nodes, pre-order.
pub fn parse(v: &Value) -> Result<Vec<BodyPart>> {
    let Some(root) = v.list() else {
        return Err(Error::protocol("BODYSTRUCTURE is not a list"));
    };
    let multipart = root.first().is_some_and(|f| f.list().is_some());
    let mut stack = vec![Pending {
        body: root,
        section: if multipart { "TEXT".into() } else { "1".into() },
        prefix: String::new(),
        depth: 0,
        parent: None,
    }];
    let mut out: Vec<BodyPart> = Vec::new();
    while let Some(p) = stack.pop() {
        if out.len() >= MAX_NODES {
            return Err(Error::protocol(format!(
                "BODYSTRUCTURE has more than {MAX_NODES} parts"
            )));
        }
        let index = out.len();
        if let Some(parent) = p.parent {
            out[parent].children += 1;
        }
        let (node, children) = node(&p);
        out.push(node);
        // Reversed, so that the first child is taken next: pre-order.
        for c in children.into_iter().rev() {
            stack.push(Pending {
                parent: Some(index),
                depth: p.depth + 1,
                ..c
            });
        }
    }
    Ok(out)
}

/// One node and the children still to walk.
fn node<'a>(p: &Pending<'a>) -> (BodyPart, Vec<Pending<'a>>) {
    let b = p.body;
    let mut children = Vec::new();
    let mut n = BodyPart {
        section: c_string(&p.section),
        depth: p.depth,
        parent: p.parent,
        ..Default::default()
    };
    let n_sub = b.iter().take_while(|x| x.list().is_some()).count();
    let (ctype, disp) = if n_sub > 0 {
        // Multipart: bodies, subtype, then extension data: params, disposition.
        for (k, sub) in b[..n_sub].iter().enumerate() {
            let section = child_section(&p.prefix, k + 1);
            children.push(Pending {
                body: sub.list().unwrap_or(&[]),
                prefix: section.clone(),
                section,
                depth: 0,
                parent: None,
            });
        }
        n.media_type = c_string("multipart");
        n.subtype = c_string(&lower_text(b.get(n_sub)));
        (params(b.get(n_sub + 1)), disposition(b.get(n_sub + 2)))
    } else {
        let media = lower_text(b.first());
        let sub = lower_text(b.get(1));
        n.encoding = c_string(&lower_text(b.get(5)));
        n.size = b.get(6).and_then(Value::number).unwrap_or(0);
        n.content_id = c_string(
            b.get(3)
                .and_then(Value::text)
                .unwrap_or_default()
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>'),
        );
        let rfc822 = media == "message" && (sub == "rfc822" || sub == "global");
        // Fields after size: text has lines; message/rfc822 envelope, body,
        // lines; then md5, disposition (extension data).
        let disp_at = match media.as_str() {
            "text" => 9,
            _ if rfc822 => 11,
            _ => 8,
        };
        if rfc822 {
            if let Some(inner) = b.get(8).and_then(Value::list) {
                let inner_multi = inner.first().is_some_and(|f| f.list().is_some());
                children.push(Pending {
                    body: inner,
                    section: format!("{}.{}", p.section, if inner_multi { "TEXT" } else { "1" }),
                    prefix: p.section.clone(),
                    depth: 0,
                    parent: None,
                });
            }
        }
        n.media_type = c_string(&media);
        n.subtype = c_string(&sub);
        (params(b.get(2)), disposition(b.get(disp_at)))
    };
    let filename = find(&disp.1, "filename")
        .or_else(|| find(&ctype, "name"))
        .unwrap_or("");
    n.filename = c_string(filename);
    n.disposition = c_string(&disp.0);
    n.params = ctype.iter().map(|(k, v)| (c_string(k), c_string(v))).collect();
    (n, children)
}

#[cfg(test)]
mod tests {
    use super::super::parse::{parse_response, Piece, Response};
    use super::*;

    fn structure(line: &str) -> Result<Vec<BodyPart>> {
        let r = parse_response(vec![Piece::Line(line.as_bytes().to_vec())])?;
        let Response::Fetch { atts, .. } = r else {
            panic!("not a FETCH")
        };
        parse(&atts[1])
    }

    fn s(c: &std::ffi::CString) -> &str {
        c.to_str().unwrap()
    }

    #[test]
    fn a_nested_structure_gets_section_numbers_and_decoded_names() {
        let parts = structure(concat!(
            "* 1 FETCH (BODYSTRUCTURE (",
            "((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 12 1 NIL NIL NIL NIL)",
            "((\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 40 2 NIL NIL NIL NIL)",
            "(\"image\" \"png\" NIL \"<img1@x>\" NIL \"base64\" 1000 NIL (\"inline\" NIL) NIL NIL) \"related\" (\"boundary\" \"r\") NIL NIL NIL)",
            " \"alternative\" (\"boundary\" \"a\") NIL NIL NIL)",
            "(\"application\" \"pdf\" (\"name\" \"x.pdf\") NIL NIL \"base64\" 20971520 NIL ",
            "(\"attachment\" (\"filename*0*\" \"UTF-8''%E2%82%AC%20\" \"filename*1*\" \"rates.pdf\")) NIL NIL)",
            "(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 300 (NIL \"s\" NIL NIL NIL NIL NIL NIL NIL NIL) ",
            "(\"text\" \"plain\" NIL NIL NIL \"7bit\" 10 1 NIL NIL NIL NIL) 5 NIL NIL NIL NIL)",
            " \"mixed\" (\"boundary\" \"o\") NIL NIL NIL))"
        ))
        .unwrap();
        let got: Vec<(&str, &str, &str, u32, usize)> = parts
            .iter()
            .map(|p| {
                (
                    s(&p.section),
                    s(&p.media_type),
                    s(&p.subtype),
                    p.depth,
                    p.children,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("TEXT", "multipart", "mixed", 0, 3),
                ("1", "multipart", "alternative", 1, 2),
                ("1.1", "text", "plain", 2, 0),
                ("1.2", "multipart", "related", 2, 2),
                ("1.2.1", "text", "html", 3, 0),
                ("1.2.2", "image", "png", 3, 0),
                ("2", "application", "pdf", 1, 0),
                ("3", "message", "rfc822", 1, 1),
                ("3.1", "text", "plain", 2, 0),
            ]
        );
        assert_eq!(parts[2].params[0].0.to_str().unwrap(), "charset");
        assert_eq!(s(&parts[2].encoding), "quoted-printable");
        assert_eq!(s(&parts[5].content_id), "img1@x");
        assert_eq!(s(&parts[5].disposition), "inline");
        assert_eq!(s(&parts[6].filename), "\u{20ac} rates.pdf");
        assert_eq!(s(&parts[6].disposition), "attachment");
        assert_eq!(parts[6].size, 20_971_520);
        assert_eq!(parts[4].parent, Some(3));
        assert_eq!(parts[0].parent, None);
    }

    #[test]
    fn a_single_part_message_is_section_1() {
        let parts = structure(
            "* 1 FETCH (BODYSTRUCTURE (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 3 1))",
        )
        .unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(
            (
                s(&parts[0].section),
                s(&parts[0].media_type),
                s(&parts[0].encoding)
            ),
            ("1", "text", "7bit")
        );
        assert_eq!(parts[0].size, 3);
    }

    #[test]
    fn malformed_structures_give_errors_or_empty_fields_never_panics() {
        for bad in [
            "* 1 FETCH (BODYSTRUCTURE NIL)",
            "* 1 FETCH (BODYSTRUCTURE ())",
            "* 1 FETCH (BODYSTRUCTURE (()))",
            "* 1 FETCH (BODYSTRUCTURE ((\"a\") (NIL NIL) 7))",
            "* 1 FETCH (BODYSTRUCTURE (\"message\" \"rfc822\" NIL NIL NIL NIL x NIL (((((((x)))))))))",
            "* 1 FETCH (BODYSTRUCTURE (\"text\" \"plain\" (\"a\") NIL NIL NIL -1 NIL (\"x\" (\"y\")) NIL))",
        ] {
            let _ = structure(bad);
        }
        // As deep as the response parser allows: walked without recursion.
        let mut line = String::from("* 1 FETCH (BODYSTRUCTURE ");
        for _ in 0..60 {
            line.push('(');
        }
        line.push_str("\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1");
        for _ in 0..60 {
            line.push_str(" \"mixed\")");
        }
        line.push(')');
        let parts = structure(&line).unwrap();
        assert_eq!(parts.len(), 60);
        assert_eq!(parts[59].depth, 59);
        // Too many parts.
        let mut line = String::from("* 1 FETCH (BODYSTRUCTURE (");
        for _ in 0..=MAX_NODES {
            line.push_str("(\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1)");
        }
        line.push_str(" \"mixed\"))");
        assert!(structure(&line).is_err());
    }
}
