//! The tunnel between a session's agent and the connect relay (docs/agent.md,
//! "Connect"): one line per message, words separated by spaces.
//!
//! Agent → relay: `HELLO <relay token>` (the control connection), `PING <seconds>`,
//! `DATA <id> <relay token>` (a data connection for `OPEN <id>`). Relay → agent:
//! `OPEN <id>`, `PONG`, `REFUSED <why>`.

/// A control line longer than this is not one of ours.
pub const MAX_LINE: usize = 4096;
/// How many ping intervals either side may stay silent before the tunnel is given up.
pub const MISSED_PINGS: u32 = 3;
/// The interval a bare `PING` announces.
pub const DEFAULT_PING_SECONDS: u64 = 60;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Hello {
        token: String,
    },
    /// The sender's ping interval (`None`: a bare `PING`).
    Ping {
        seconds: Option<u64>,
    },
    Pong,
    Open {
        id: u64,
    },
    Data {
        id: u64,
        token: String,
    },
    Refused {
        why: String,
    },
}

impl Message {
    /// The line (with its `\n`).
    pub fn encode(&self) -> String {
        match self {
            Message::Hello { token } => format!("HELLO {token}\n"),
            Message::Ping { seconds: Some(s) } => format!("PING {s}\n"),
            Message::Ping { seconds: None } => "PING\n".to_string(),
            Message::Pong => "PONG\n".to_string(),
            Message::Open { id } => format!("OPEN {id}\n"),
            Message::Data { id, token } => format!("DATA {id} {token}\n"),
            Message::Refused { why } => format!("REFUSED {why}\n"),
        }
    }

    /// The message of one line (its `\n` optional); `None` if it is none of ours.
    /// Extra words after `PONG` and a `PING`'s unreadable interval are tolerated (older
    /// peers); `HELLO`, `OPEN` and `DATA` take exactly their words.
    pub fn parse(line: &str) -> Option<Message> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["HELLO", token] => Some(Message::Hello {
                token: token.to_string(),
            }),
            ["PING", rest @ ..] => Some(Message::Ping {
                seconds: rest.first().and_then(|s| s.parse().ok()),
            }),
            ["PONG", ..] => Some(Message::Pong),
            ["OPEN", id] => Some(Message::Open {
                id: id.parse().ok()?,
            }),
            ["DATA", id, token] => Some(Message::Data {
                id: id.parse().ok()?,
                token: token.to_string(),
            }),
            ["REFUSED", ..] => Some(Message::Refused {
                why: line.trim().trim_start_matches("REFUSED").trim().to_string(),
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let all = [
            Message::Hello {
                token: "a.b.c".into(),
            },
            Message::Ping { seconds: Some(5) },
            Message::Ping { seconds: None },
            Message::Pong,
            Message::Open { id: 7 },
            Message::Data {
                id: 7,
                token: "a.b.c".into(),
            },
            Message::Refused {
                why: "not a relay token".into(),
            },
        ];
        for m in all {
            let line = m.encode();
            assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
            assert_eq!(Message::parse(&line), Some(m));
        }
        assert_eq!(Message::Hello { token: "t".into() }.encode(), "HELLO t\n");
        assert_eq!(
            Message::Data {
                id: 3,
                token: "t".into()
            }
            .encode(),
            "DATA 3 t\n"
        );
    }

    #[test]
    fn other_lines_are_not_messages() {
        assert_eq!(Message::parse(""), None);
        assert_eq!(Message::parse("HELLO\n"), None);
        assert_eq!(Message::parse("HELLO a b\n"), None);
        assert_eq!(Message::parse("OPEN x\n"), None);
        assert_eq!(Message::parse("OPEN 1 2\n"), None);
        assert_eq!(Message::parse("DATA 1\n"), None);
        assert_eq!(Message::parse("DATA -1 t\n"), None);
        assert_eq!(Message::parse("hello t\n"), None);
        assert_eq!(Message::parse("GET / HTTP/1.1\r\n"), None);
        assert_eq!(
            Message::parse("PING soon\n"),
            Some(Message::Ping { seconds: None })
        );
        assert_eq!(Message::parse("PONG 1\n"), Some(Message::Pong));
    }
}
