//! An OAuth2 token introspection endpoint (RFC 7662) for Dovecot's oauth2
//! passdb ([`TokenServer`]): a thread answering HTTP on a loopback port,
//! with tokens the test issues and lets expire.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest request accepted (headers and body together).
const MAX_REQUEST: usize = 64 * 1024;

#[derive(Default)]
struct State {
    /// token -> (user, expiry in Unix seconds)
    tokens: Mutex<HashMap<String, (String, u64)>>,
    /// Introspection requests answered.
    requests: AtomicUsize,
    stop: AtomicBool,
}

/// The introspection endpoint: `POST /introspect` with `token=...` (form
/// encoded), or `GET /introspect?token=...`. It answers 200 with
/// `{"active": true, "username": USER, "exp": SECONDS}` for a token it
/// issued that has not expired, else `{"active": false}`. Stops when dropped.
pub struct TokenServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    state: Arc<State>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TokenServer {
    /// Starts it on a free loopback port, with no tokens issued.
    pub fn start() -> TokenServer {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind the token server");
        let port = l.local_addr().expect("local addr").port();
        let state = Arc::new(State::default());
        let s = state.clone();
        std::thread::Builder::new()
            .name("token-server".into())
            .spawn(move || {
                for conn in l.incoming() {
                    if s.stop.load(Ordering::Acquire) {
                        break;
                    }
                    if let Ok(c) = conn {
                        let s = s.clone();
                        std::thread::spawn(move || serve(c, &s));
                    }
                }
            })
            .expect("spawn the token server");
        TokenServer { port, state }
    }

    /// The URL Dovecot's `introspection_url` names.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/introspect", self.port)
    }

    /// Issues `token` for `user`, valid for `valid_for`.
    pub fn issue(&self, user: &str, token: &str, valid_for: Duration) {
        let exp = now() + valid_for.as_secs().max(1);
        self.state
            .tokens
            .lock()
            .unwrap()
            .insert(token.to_string(), (user.to_string(), exp));
    }

    /// Lets `token` expire now, as an hour passing would.
    pub fn expire(&self, token: &str) {
        if let Some(t) = self.state.tokens.lock().unwrap().get_mut(token) {
            t.1 = 0;
        }
    }

    /// How many introspection requests it answered.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::Acquire)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Percent-decodes a form value (`+` is a space).
fn form_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(x) => {
                        out.push(x);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn token_of(query: &str) -> Option<String> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .map(form_decode)
}

/// One request per connection (the answer says `Connection: close`).
fn serve(c: TcpStream, s: &State) {
    let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
    let mut r = BufReader::new(c.take(MAX_REQUEST as u64));
    let mut request_line = String::new();
    if r.read_line(&mut request_line).is_err() {
        return;
    }
    let mut length = 0usize;
    let mut bearer = None;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        let (name, value) = h.split_once(':').unwrap_or((&h, ""));
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().unwrap_or(0),
            "authorization" => bearer = value.trim().strip_prefix("Bearer ").map(str::to_string),
            _ => {}
        }
    }
    let mut body = vec![0u8; length.min(MAX_REQUEST)];
    if r.read_exact(&mut body).is_err() {
        return;
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    let query = path.split_once('?').map_or("", |(_, q)| q);
    let token = token_of(&String::from_utf8_lossy(&body))
        .or_else(|| token_of(query))
        .or(bearer);
    let answer = {
        let tokens = s.tokens.lock().unwrap();
        match token.as_ref().and_then(|t| tokens.get(t)) {
            Some((user, exp)) if *exp > now() => {
                format!(r#"{{"active": true, "username": "{user}", "exp": {exp}}}"#)
            }
            _ => r#"{"active": false}"#.to_string(),
        }
    };
    s.requests.fetch_add(1, Ordering::AcqRel);
    let mut c = r.into_inner().into_inner();
    let _ = write!(
        c,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    );
    let _ = c.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_decode() {
        assert_eq!(form_decode("a%2Bb+c"), "a+b c");
        assert_eq!(token_of("x=1&token=t%3D%3D"), Some("t==".into()));
        assert_eq!(form_decode("100%"), "100%");
    }
}
