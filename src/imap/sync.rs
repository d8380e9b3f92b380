//! Sync state: what a client needs to keep a local copy of a mailbox
//! (RFC 3501 UIDVALIDITY and UIDNEXT, RFC 7162 CONDSTORE and QRESYNC).
//!
//! - SELECT and EXAMINE record the mailbox's UIDVALIDITY, UIDNEXT and
//!   HIGHESTMODSEQ (from their response codes) next to EXISTS; every op
//!   that selects hands them back as its result's mailbox fields, and every
//!   fetch or search item carries the UIDVALIDITY.
//! - A caller that cached UIDs names the UIDVALIDITY they belong to
//!   (`uid_set` "1:5;UIDVALIDITY=3857529045", after IMAP URLs, RFC 5092):
//!   if the mailbox's differs, the op fails NOT_FOUND before any UID is
//!   sent, and its result holds the mailbox's new state.
//! - STATUS without selecting; fetch of what changed since a MODSEQ
//!   (CHANGEDSINCE, and with QRESYNC the UIDs expunged since: VANISHED);
//!   IDLE notifications that list what changed; SPECIAL-USE folder roles.

use std::collections::BTreeMap;

use super::args::quote;
use super::command::{Command, Mailbox};
use super::parse::{self, Cond, Response, StatusLine, Value};
use super::session::{Selected, Session};
use super::{add_uid_set, utf7};
use crate::result::{field, Outcome, ResultData, ResultItem, Success, MAX_CHANGE_ITEMS};
use crate::status::{Error, Result, Status};

/// A mailbox's sync state as SELECT, EXAMINE and later responses told it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MailboxState {
    pub uidvalidity: u32,
    pub uidnext: u32,
    /// 0 when the server has no CONDSTORE or the mailbox no MODSEQs.
    pub highestmodseq: u64,
}

impl MailboxState {
    /// Applies a response code (`UIDVALIDITY 3857529045`, `UIDNEXT 4392`,
    /// `HIGHESTMODSEQ 715194045007`, `NOMODSEQ`).
    pub fn apply_code(&mut self, st: &StatusLine) {
        let Some(code) = st.code.as_deref() else { return };
        let mut w = code.split_ascii_whitespace();
        let name = w.next().unwrap_or("").to_ascii_uppercase();
        let n = w.next().and_then(|x| x.parse::<u64>().ok());
        match (name.as_str(), n) {
            ("UIDVALIDITY", Some(n)) => self.uidvalidity = u32::try_from(n).unwrap_or(0),
            ("UIDNEXT", Some(n)) => self.uidnext = u32::try_from(n).unwrap_or(0),
            ("HIGHESTMODSEQ", Some(n)) => self.highestmodseq = n,
            ("NOMODSEQ", _) => self.highestmodseq = 0,
            _ => {}
        }
    }

    /// Takes in a message's MODSEQ seen in an untagged FETCH: the mailbox's
    /// HIGHESTMODSEQ is at least that (RFC 7162 3.1.2.1 asks clients to
    /// use the highest seen). Servers that send no HIGHESTMODSEQ code after
    /// a change (Cyrus) leave this as the only news of it; without it the
    /// next op would report the SELECT's older value again.
    pub fn saw_modseq(&mut self, modseq: u64) {
        if modseq > self.highestmodseq {
            self.highestmodseq = modseq;
        }
    }
}

/// The `MODSEQ (n)` of a FETCH response's attributes, without copying them.
fn fetch_modseq(atts: &[Value]) -> Option<u64> {
    atts.chunks(2).find_map(|kv| match kv {
        [name, value] if name.atom().is_some_and(|a| a.eq_ignore_ascii_case("MODSEQ")) => {
            value.list().and_then(|l| l.first()).and_then(Value::number)
        }
        _ => None,
    })
}

/// Takes the highest MODSEQ of a fetch's items into the selected mailbox's state.
pub fn saw_items(s: &mut Session, items: &[ResultItem]) {
    let seen = items.iter().filter_map(|i| i.int_field(field::MODSEQ)).max();
    if let (Some(m), Some(sel)) = (seen, s.selected.as_mut()) {
        sel.state.saw_modseq(m);
    }
}

/// Applies an untagged response's sync news to the selected mailbox (the
/// responses `session::track` leaves to this module).
pub fn track(s: &mut Selected, r: &Response) {
    match r {
        Response::Status(st) if st.cond == Cond::Ok => s.state.apply_code(st),
        // VANISHED without EARLIER (QRESYNC): messages expunged now.
        Response::Data { name, values } if name == "VANISHED" => {
            if let Some(n) = vanished_now(values) {
                s.exists = s.exists.saturating_sub(n);
            }
        }
        Response::Fetch { atts, .. } => {
            if let Some(m) = fetch_modseq(atts) {
                s.state.saw_modseq(m);
            }
        }
        _ => {}
    }
}

/// Applies a tagged reply's codes (`[HIGHESTMODSEQ n]`) to the selected mailbox.
pub fn track_status(selected: &mut Option<Selected>, st: &StatusLine) {
    if let Some(s) = selected.as_mut() {
        if st.cond == Cond::Ok {
            s.state.apply_code(st);
        }
    }
}

/// How many UIDs a `VANISHED` (not `VANISHED (EARLIER)`) names.
pub fn vanished_now(values: &[Value]) -> Option<u32> {
    let [set] = values else { return None };
    let mut n = 0u64;
    for range in set.atom()?.split(',') {
        let mut ends = range.splitn(2, ':').map(|x| x.parse::<u64>().ok());
        let a = ends.next().flatten()?;
        let b = ends.next().map_or(Some(a), |b| b)?;
        n += a.max(b) - a.min(b) + 1;
    }
    u32::try_from(n).ok()
}

/// The UIDs a VANISHED response names (at most `max`), and whether it was
/// `VANISHED (EARLIER)`.
fn vanished_uids(values: &[Value], max: usize) -> Result<(Vec<u32>, bool)> {
    let (earlier, set) = match values {
        [Value::List(tag), set]
            if tag
                .iter()
                .any(|t| t.atom().is_some_and(|a| a.eq_ignore_ascii_case("EARLIER"))) =>
        {
            (true, set)
        }
        [set] => (false, set),
        _ => return Err(Error::protocol("a malformed VANISHED response")),
    };
    let set = set
        .atom()
        .ok_or_else(|| Error::protocol("a malformed VANISHED response"))?;
    let mut out = Vec::new();
    add_uid_set(set, &mut out, max)?;
    Ok((out, earlier))
}

/// Splits `"1:5,7;UIDVALIDITY=3857529045"` into the UID set and the
/// UIDVALIDITY the caller's UIDs belong to (`None` without the suffix).
pub fn split_uidvalidity(s: &str) -> Result<(&str, Option<u32>)> {
    let Some((set, tail)) = s.split_once(';') else {
        return Ok((s, None));
    };
    let bad = || {
        Error::invalid(format!(
            "uid_set {s:?}: after the UID set only \";UIDVALIDITY=n\" may follow (n from 1 to 4294967295)"
        ))
    };
    let (key, value) = tail.split_once('=').ok_or_else(bad)?;
    if !key.eq_ignore_ascii_case("UIDVALIDITY") || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match value.parse::<u32>() {
        Ok(v) if v > 0 => Ok((set, Some(v))),
        _ => Err(bad()),
    }
}

/// The mailbox fields of an op's result: its selected mailbox's state.
pub fn mailbox_fields(sel: &Selected) -> Vec<(u32, u64)> {
    let mut f = vec![
        (field::UIDVALIDITY, u64::from(sel.state.uidvalidity)),
        (field::UIDNEXT, u64::from(sel.state.uidnext)),
        (field::EXISTS, u64::from(sel.exists)),
    ];
    if sel.state.highestmodseq > 0 {
        f.push((field::HIGHESTMODSEQ, sel.state.highestmodseq));
    }
    f
}

/// Fails unless the selected mailbox's UIDVALIDITY is the one the op's
/// UIDs belong to: NOT_FOUND (the UIDs name no message of this mailbox),
/// with the mailbox's state as the partial result.
pub fn check_uidvalidity(sel: &Selected, expected: Option<u32>) -> Result<()> {
    let Some(want) = expected else { return Ok(()) };
    if sel.state.uidvalidity == want {
        return Ok(());
    }
    let mut partial = ResultData::new(Vec::new());
    partial.mailbox = mailbox_fields(sel);
    Err(Error::new(
        Status::NotFound,
        format!(
            "the UIDVALIDITY of {} is {}, not {want}: the cached UIDs name other messages now (nothing was done; sync the mailbox again)",
            sel.name, sel.state.uidvalidity
        ),
    )
    .with_partial(partial))
}

/// Gives `result` the selected mailbox's state: its mailbox fields, and
/// HERALD_FIELD_UIDVALIDITY on every item (`items_too`: fetch, search).
pub fn stamp(s: &Session, mut result: ResultData, items_too: bool) -> ResultData {
    if let Some(sel) = &s.selected {
        let mut fields = mailbox_fields(sel);
        // MODSEQs seen in the op may be newer than the SELECT's HIGHESTMODSEQ.
        let seen = result
            .items
            .iter()
            .filter_map(|i| i.int_field(field::MODSEQ))
            .max()
            .unwrap_or(0);
        if seen > sel.state.highestmodseq {
            fields.retain(|(f, _)| *f != field::HIGHESTMODSEQ);
            fields.push((field::HIGHESTMODSEQ, seen));
        }
        if items_too {
            for i in &mut result.items {
                i.set_int(field::UIDVALIDITY, u64::from(sel.state.uidvalidity));
            }
        }
        result.mailbox = fields;
    }
    result
}

/// A result with no items but the selected mailbox's state (store, expunge).
pub fn state_only(s: &Session, detail: String) -> Outcome {
    Ok(Success::new(0, detail).with_result(stamp(s, ResultData::new(Vec::new()), false)))
}

/// The modifier of a `UID FETCH` of what changed since `since`:
/// `(CHANGEDSINCE n VANISHED)` (VANISHED with QRESYNC enabled).
fn fetch_modifier(since: Option<u64>, qresync: bool) -> String {
    match since {
        None => String::new(),
        Some(m) if qresync => format!(" (CHANGEDSINCE {m} VANISHED)"),
        Some(m) => format!(" (CHANGEDSINCE {m})"),
    }
}

/// Selects `mailbox` (read-only) and sends `UID FETCH uids (items)` as
/// command `tag`, with CHANGEDSINCE when `since`. When the mailbox must be
/// EXAMINEd first, the fetch goes in the same write: opening a folder and
/// fetching it costs one round trip, not two.
pub fn select_and_fetch(
    s: &mut Session,
    mailbox: &str,
    tag: &str,
    uids: &str,
    items: &str,
    since: Option<u64>,
) -> Result<()> {
    let mut line = Command::UidFetch { uids, items }.line(tag);
    line.insert_str(line.len() - 2, &fetch_modifier(since, s.qresync));
    if s.select_then(mailbox, false, Some((tag, line.as_bytes())))? {
        return Ok(());
    }
    s.send(line.as_bytes())
}

/// Selects `mailbox` for a fetch of what changed, with the server's view
/// of it current: a server shows a connection other clients' changes only
/// when it syncs, and CHANGEDSINCE must see them all. A selection kept
/// from an earlier op is synced with a NOOP first, and waited for: Dovecot
/// runs a FETCH pipelined behind a NOOP before the NOOP's sync. (What the
/// NOOP reports only updates the mailbox's state: the fetch reports every
/// change since its MODSEQ again.)
pub fn select_synced(s: &mut Session, mailbox: &str) -> Result<()> {
    let kept = s.selected.as_ref().is_some_and(|x| x.name == mailbox);
    s.select(mailbox, false)?;
    need_condstore(s)?;
    if kept {
        s.simple(Command::Noop, "NOOP")?;
    }
    Ok(())
}

/// Most UIDs one VANISHED response may name in a result.
const MAX_VANISHED: usize = 1 << 20;

/// Adds a fetch's `VANISHED (EARLIER)` UIDs as items with
/// HERALD_FIELD_VANISHED = 1.
pub fn add_vanished(values: &[Value], got: &mut BTreeMap<u32, ResultItem>) -> Result<()> {
    let (uids, _) = vanished_uids(values, MAX_VANISHED.saturating_sub(got.len()))?;
    for u in uids {
        got.insert(u, ResultItem::new(u64::from(u)).with_int(field::VANISHED, 1));
    }
    Ok(())
}

/// Checks that the server can fetch by MODSEQ.
pub fn need_condstore(s: &Session) -> Result<()> {
    if s.caps.has("CONDSTORE") || s.caps.has("QRESYNC") {
        return Ok(());
    }
    Err(Error::new(
        Status::Unsupported,
        "fetching what changed needs CONDSTORE (RFC 7162); the server does not offer it",
    ))
}

/// The source and target UIDs of a `COPYUID uidvalidity src dst` code
/// (RFC 4315) as result items: uid = the copy's UID in the target,
/// HERALD_FIELD_UIDVALIDITY = the target's, HERALD_FIELD_SOURCE_UID.
pub fn copyuid_items(st: &StatusLine, max: usize) -> Vec<ResultItem> {
    let Some(code) = st.code.as_deref() else {
        return Vec::new();
    };
    let mut w = code.split_ascii_whitespace();
    if !w.next().is_some_and(|n| n.eq_ignore_ascii_case("COPYUID")) {
        return Vec::new();
    }
    let (Some(v), Some(src), Some(dst)) = (w.next(), w.next(), w.next()) else {
        return Vec::new();
    };
    let Ok(v) = v.parse::<u32>() else {
        return Vec::new();
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    if add_uid_set(src, &mut a, max).is_err() || add_uid_set(dst, &mut b, max).is_err() || a.len() != b.len()
    {
        return Vec::new();
    }
    a.iter()
        .zip(&b)
        .map(|(&s, &d)| {
            ResultItem::new(u64::from(d))
                .with_int(field::UIDVALIDITY, u64::from(v))
                .with_int(field::SOURCE_UID, u64::from(s))
        })
        .collect()
}

/// The UIDVALIDITY of an `APPENDUID uidvalidity uids` code.
pub fn appenduid_validity(st: &StatusLine) -> Option<u32> {
    let code = st.code.as_deref()?;
    let mut w = code.split_ascii_whitespace();
    if !w.next()?.eq_ignore_ascii_case("APPENDUID") {
        return None;
    }
    w.next()?.parse().ok()
}

/// RFC 6154 SPECIAL-USE attributes, as herald reports them.
pub(super) const SPECIAL_USE: [&str; 7] = [
    "\\All",
    "\\Archive",
    "\\Drafts",
    "\\Flagged",
    "\\Junk",
    "\\Sent",
    "\\Trash",
];

/// The SPECIAL-USE attributes among a LIST response's (canonical
/// spelling), space separated; empty when none.
pub fn special_use(attributes: &[String]) -> String {
    attributes
        .iter()
        .filter(|a| SPECIAL_USE.contains(&a.as_str()))
        .cloned()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The LIST command: with LIST-EXTENDED and SPECIAL-USE, the roles are
/// asked for (`RETURN (CHILDREN SPECIAL-USE)`, RFC 6154), so servers that
/// list them only when asked list them too; CHILDREN keeps \HasChildren and
/// \HasNoChildren, which an extended LIST returns only when asked.
pub fn list_command(s: &Session, pattern: &str) -> String {
    let base = Command::List(Mailbox(pattern)).to_string();
    if s.caps.has("SPECIAL-USE") && s.caps.has("LIST-EXTENDED") {
        format!("{base} RETURN (CHILDREN SPECIAL-USE)")
    } else {
        base
    }
}

/// Most STATUS commands in flight at once.
const STATUS_WINDOW: usize = 64;

/// STATUS of each mailbox, without selecting any: one item each, in the
/// order asked, with HERALD_FIELD_NAME and the int fields MESSAGES,
/// UNSEEN, UIDNEXT, UIDVALIDITY and (with CONDSTORE) HIGHESTMODSEQ. The
/// commands are pipelined, up to [`STATUS_WINDOW`] at a time. A mailbox
/// the server refuses fails the op with the server's reason; the result
/// then holds the mailboxes before it.
pub fn status(s: &mut Session, mailboxes: &[String]) -> Outcome {
    let items_asked = if s.caps.has("CONDSTORE") || s.caps.has("QRESYNC") {
        "MESSAGES UNSEEN UIDNEXT UIDVALIDITY HIGHESTMODSEQ"
    } else {
        "MESSAGES UNSEEN UIDNEXT UIDVALIDITY"
    };
    let mut items = Vec::with_capacity(mailboxes.len());
    for chunk in mailboxes.chunks(STATUS_WINDOW) {
        let mut out = String::new();
        let mut tags = Vec::with_capacity(chunk.len());
        for mb in chunk {
            let tag = s.conn().next_tag();
            out.push_str(&format!(
                "{tag} STATUS {} ({items_asked})\r\n",
                quote(&utf7::encode(mb))
            ));
            tags.push(tag);
        }
        s.send(out.as_bytes())?;
        let mut got: Vec<Option<ResultItem>> = vec![None; chunk.len()];
        let mut refused = None;
        let mut answered = 0;
        while answered < tags.len() {
            match s.read_response(&mut |_| {})? {
                Response::Tagged { tag, status } => {
                    let Some(i) = tags.iter().position(|t| *t == tag) else {
                        return Err(Error::protocol(format!("a reply with tag {tag} to no STATUS")));
                    };
                    answered += 1;
                    if status.cond != Cond::Ok && refused.is_none() {
                        refused = Some((i, status.error(&format!("STATUS {}", chunk[i]))));
                    }
                }
                Response::Data { name, values } if name == "STATUS" => {
                    if let Some((mb, item)) = status_item(&values) {
                        // The first slot of that name not yet answered (a name may repeat).
                        if let Some(i) = (0..chunk.len()).find(|&i| chunk[i] == mb && got[i].is_none()) {
                            got[i] = Some(item);
                        }
                    }
                }
                r => super::session::track(&mut s.selected, &r),
            }
        }
        for (i, g) in got.into_iter().enumerate() {
            if refused.as_ref().is_some_and(|(at, _)| *at == i) {
                let (_, e) = refused.take().expect("checked");
                return Err(e.with_partial(ResultData::new(items)));
            }
            items.push(g.unwrap_or_else(|| ResultItem::new(0).with_str(field::NAME, &chunk[i])));
        }
    }
    let n = items.len();
    Ok(Success::new(0, format!("status of {n} mailboxes")).with_result(ResultData::new(items)))
}

/// `* STATUS name (MESSAGES 3 UIDNEXT 4 ...)` as the mailbox's name (UTF-8)
/// and its item.
fn status_item(values: &[Value]) -> Option<(String, ResultItem)> {
    let [name, atts, ..] = values else { return None };
    let mb = utf7::decode(&name.text()?);
    let mb = if mb.eq_ignore_ascii_case("INBOX") {
        "INBOX".to_string()
    } else {
        mb
    };
    let mut item = ResultItem::new(0).with_str(field::NAME, &mb);
    for pair in atts.list()?.chunks(2) {
        let [k, v] = pair else { continue };
        let f = match k.atom()?.to_ascii_uppercase().as_str() {
            "MESSAGES" => field::MESSAGES,
            "UNSEEN" => field::UNSEEN,
            "UIDNEXT" => field::UIDNEXT,
            "UIDVALIDITY" => field::UIDVALIDITY,
            "HIGHESTMODSEQ" => field::HIGHESTMODSEQ,
            _ => continue,
        };
        item.set_int(f, v.number()?);
    }
    Some((mb, item))
}

/// What changed in a mailbox during IDLE since the last notification, as
/// result items: an expunge (uid 0, HERALD_FIELD_EXPUNGED = its sequence
/// number), a VANISHED UID (uid, HERALD_FIELD_VANISHED = 1), a flag change
/// (uid, HERALD_FIELD_FLAGS, HERALD_FIELD_MODSEQ with CONDSTORE).
#[derive(Debug, Default)]
pub struct ChangeLog {
    pub items: Vec<ResultItem>,
    pub truncated: bool,
}

impl ChangeLog {
    fn push(&mut self, item: ResultItem) {
        if self.items.len() < MAX_CHANGE_ITEMS {
            self.items.push(item);
        } else {
            self.truncated = true;
        }
    }

    /// Records what an untagged response seen in IDLE changed.
    pub fn record(&mut self, r: &Response) {
        match r {
            Response::Expunge(n) => self.push(ResultItem::new(0).with_int(field::EXPUNGED, u64::from(*n))),
            Response::Data { name, values } if name == "VANISHED" => {
                let room = MAX_CHANGE_ITEMS.saturating_sub(self.items.len());
                match vanished_uids(values, room) {
                    Ok((uids, _)) => {
                        for u in uids {
                            self.push(ResultItem::new(u64::from(u)).with_int(field::VANISHED, 1));
                        }
                    }
                    Err(_) => self.truncated = true,
                }
            }
            Response::Fetch { seq, atts } => {
                let Ok(d) = parse::fetch_data(atts.clone()) else {
                    self.truncated = true;
                    return;
                };
                // Without QRESYNC a server may leave the UID out (Cyrus
                // does): the sequence number still names the message.
                let mut item =
                    ResultItem::new(d.uid.map_or(0, u64::from)).with_int(field::INDEX, u64::from(*seq));
                if let Some(f) = &d.flags {
                    item.set_str(field::FLAGS, f);
                }
                if let Some(m) = d.modseq {
                    item.set_int(field::MODSEQ, m);
                }
                self.push(item);
            }
            _ => {}
        }
    }

    /// The notification's items: the mailbox's state first (NAME, EXISTS,
    /// UIDVALIDITY, HIGHESTMODSEQ, TRUNCATED), then what changed, oldest
    /// first; the log is emptied.
    pub fn take(&mut self, mailbox: &str, exists: u32, sel: Option<&Selected>) -> Vec<ResultItem> {
        let mut head = ResultItem::new(0)
            .with_str(field::NAME, mailbox)
            .with_int(field::EXISTS, u64::from(exists));
        if let Some(sel) = sel {
            head.set_int(field::UIDVALIDITY, u64::from(sel.state.uidvalidity));
            let seen = self.items.iter().filter_map(|i| i.int_field(field::MODSEQ)).max();
            let m = seen.unwrap_or(0).max(sel.state.highestmodseq);
            if m > 0 {
                head.set_int(field::HIGHESTMODSEQ, m);
            }
        }
        if std::mem::take(&mut self.truncated) {
            head.set_int(field::TRUNCATED, 1);
        }
        let mut items = vec![head];
        items.append(&mut self.items);
        items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(code: &str) -> StatusLine {
        StatusLine {
            cond: Cond::Ok,
            code: Some(code.into()),
            text: String::new(),
        }
    }

    #[test]
    fn select_codes_fill_the_state() {
        let mut m = MailboxState::default();
        for c in [
            "UIDVALIDITY 3857529045",
            "UIDNEXT 4392",
            "HIGHESTMODSEQ 715194045007",
            "PERMANENTFLAGS (\\*)",
        ] {
            m.apply_code(&st(c));
        }
        assert_eq!(
            m,
            MailboxState {
                uidvalidity: 3857529045,
                uidnext: 4392,
                highestmodseq: 715194045007
            }
        );
        m.apply_code(&st("NOMODSEQ"));
        assert_eq!(m.highestmodseq, 0);
        m.apply_code(&st("UIDVALIDITY 99999999999"));
        assert_eq!(m.uidvalidity, 0, "out of range is unknown, not wrapped");
    }

    #[test]
    fn modseqs_seen_in_fetches_raise_the_highestmodseq_never_lower_it() {
        let mut sel = Selected {
            name: "INBOX".into(),
            read_only: true,
            exists: 6,
            synced: 0,
            state: MailboxState {
                uidvalidity: 1,
                uidnext: 7,
                highestmodseq: 7,
            },
        };
        let fetch =
            |text: &[u8]| match parse::parse_response(vec![parse::Piece::Line(text.to_vec())]).unwrap() {
                r @ Response::Fetch { .. } => r,
                r => panic!("{r:?}"),
            };
        // Cyrus's answer to a NOOP after another client flagged messages.
        track(
            &mut sel,
            &fetch(b"* 1 FETCH (FLAGS (\\Flagged) UID 1 MODSEQ (8))"),
        );
        track(&mut sel, &fetch(b"* 3 FETCH (UID 4 modseq (9) FLAGS ())"));
        assert_eq!(sel.state.highestmodseq, 9);
        track(&mut sel, &fetch(b"* 2 FETCH (MODSEQ (3) UID 3)"));
        track(&mut sel, &fetch(b"* 2 FETCH (UID 3 FLAGS (MODSEQ))"));
        assert_eq!(sel.state.highestmodseq, 9, "never lowered; a flag is no MODSEQ");
        // A HIGHESTMODSEQ code is the server's word.
        track(&mut sel, &Response::Status(st("HIGHESTMODSEQ 13")));
        assert_eq!(sel.state.highestmodseq, 13);
    }

    #[test]
    fn uid_sets_may_name_their_uidvalidity() {
        assert_eq!(split_uidvalidity("1:5,7").unwrap(), ("1:5,7", None));
        assert_eq!(
            split_uidvalidity("1:*;UIDVALIDITY=42").unwrap(),
            ("1:*", Some(42))
        );
        assert_eq!(
            split_uidvalidity("3;uidvalidity=4294967295").unwrap(),
            ("3", Some(u32::MAX))
        );
        for bad in [
            "1;",
            "1;UIDVALIDITY",
            "1;UIDVALIDITY=",
            "1;UIDVALIDITY=0",
            "1;UIDVALIDITY=-1",
            "1;UIDVALIDITY=4294967296",
            "1;X=3",
            "1;UIDVALIDITY=3;x",
            "1;UIDVALIDITY= 3",
        ] {
            assert_eq!(
                split_uidvalidity(bad).unwrap_err().status,
                Status::InvalidArgument,
                "{bad}"
            );
        }
    }

    #[test]
    fn copyuid_and_appenduid_codes() {
        let items = copyuid_items(&st("COPYUID 38505 304,319:320 3956:3958"), 100);
        let pairs: Vec<(u64, u64, u64)> = items
            .iter()
            .map(|i| {
                (
                    i.int_field(field::SOURCE_UID).unwrap(),
                    i.uid,
                    i.int_field(field::UIDVALIDITY).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            pairs,
            [(304, 3956, 38505), (319, 3957, 38505), (320, 3958, 38505)]
        );
        assert!(
            copyuid_items(&st("COPYUID 1 1:3 4"), 100).is_empty(),
            "sets of different sizes"
        );
        assert!(copyuid_items(&st("COPYUID x 1 2"), 100).is_empty());
        assert!(copyuid_items(&st("APPENDUID 1 2"), 100).is_empty());
        assert!(
            copyuid_items(&st("COPYUID 1 1:4294967295 1:4294967295"), 100).is_empty(),
            "bounded"
        );
        assert_eq!(appenduid_validity(&st("APPENDUID 38505 3955")), Some(38505));
        assert_eq!(appenduid_validity(&st("COPYUID 38505 1 2")), None);
    }

    #[test]
    fn vanished_responses() {
        let atom = |s: &str| Value::Atom(s.into());
        let earlier = [Value::List(vec![atom("EARLIER")]), atom("1:3,7")];
        assert_eq!(vanished_uids(&earlier, 10).unwrap(), (vec![1, 2, 3, 7], true));
        assert_eq!(vanished_now(&earlier), None, "EARLIER does not change EXISTS");
        assert_eq!(vanished_now(&[atom("5,9:7")]), Some(4));
        assert_eq!(
            vanished_uids(&[atom("1:4294967295")], 100).unwrap_err().status,
            Status::Limit
        );
        assert_eq!(vanished_uids(&[], 100).unwrap_err().status, Status::Protocol);
        let mut got = BTreeMap::new();
        add_vanished(&earlier, &mut got).unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(got[&7].int_field(field::VANISHED), Some(1));
    }

    #[test]
    fn special_use_roles_among_attributes() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(special_use(&a(&["\\HasNoChildren", "\\Sent"])), "\\Sent");
        assert_eq!(special_use(&a(&["\\Noselect"])), "");
        assert_eq!(special_use(&a(&["\\All", "\\Flagged"])), "\\All \\Flagged");
    }

    #[test]
    fn flag_changes_name_the_message_by_sequence_number_too() {
        let mut log = ChangeLog::default();
        let fetch = |text: &[u8]| parse::parse_response(vec![parse::Piece::Line(text.to_vec())]).unwrap();
        // Cyrus without QRESYNC: no UID, no MODSEQ.
        log.record(&fetch(b"* 2 FETCH (FLAGS (\\Recent \\Flagged))"));
        log.record(&fetch(b"* 3 FETCH (UID 9 MODSEQ (12) FLAGS ())"));
        let items = log.take("INBOX", 3, None);
        assert_eq!(items.len(), 3);
        assert_eq!((items[1].uid, items[1].int_field(field::INDEX)), (0, Some(2)));
        assert_eq!(items[1].str_field(field::FLAGS), Some(c"\\Recent \\Flagged"));
        assert_eq!(items[1].int_field(field::MODSEQ), None);
        assert_eq!((items[2].uid, items[2].int_field(field::INDEX)), (9, Some(3)));
        assert_eq!(items[2].int_field(field::MODSEQ), Some(12));
    }

    #[test]
    fn change_logs_are_bounded() {
        let mut log = ChangeLog::default();
        for n in 0..MAX_CHANGE_ITEMS as u32 + 3 {
            log.record(&Response::Expunge(n + 1));
        }
        let items = log.take("INBOX", 9, None);
        assert_eq!(items.len(), MAX_CHANGE_ITEMS + 1);
        assert_eq!(items[0].int_field(field::TRUNCATED), Some(1));
        assert_eq!(items[1].int_field(field::EXPUNGED), Some(1));
        assert!(log.items.is_empty() && !log.truncated);
    }
}
