//! Who may use the session (docs/agent.md, "Connect"): a connect link's token (ES256,
//! signed by the control plane, checked with the public key in `STUDIO_CONNECT_PUBLIC_KEY`)
//! must name this studio and this session, be unexpired and unused; opening it sets an
//! HttpOnly cookie scoped to the studio's path, signed by the agent, valid
//! `COOKIE_SECONDS`. Every other request needs that cookie. Users whose access was
//! revoked (the channel says so) are refused from then on.

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use studios_protocol::claims::LinkClaims;

pub use studios_protocol::claims::PARAM;
pub const COOKIE: &str = "studios-session";
/// A cookie's life: after it, the user opens a new link (their role checked again).
pub const COOKIE_SECONDS: i64 = 8 * 3600;

pub struct Gate {
    point: Vec<u8>,
    studio: String,
    attempt: Option<String>,
    base_path: String,
    secure: bool,
    key: hmac::Key,
    seen: Mutex<HashMap<String, i64>>,
    users: Mutex<HashMap<String, i64>>,
    revoked: Mutex<HashSet<String>>,
}

/// What to do with a request.
#[derive(Debug, PartialEq)]
pub enum Decision {
    Forward {
        user: String,
    },
    /// A valid link: set the cookie and send the browser to `location`.
    Enter {
        set_cookie: String,
        location: String,
    },
    Refuse {
        status: u16,
        message: String,
    },
}

impl Gate {
    pub fn new(
        point: Vec<u8>,
        studio: &str,
        attempt: Option<&str>,
        base_path: &str,
        connect_url: Option<&str>,
    ) -> Gate {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).expect("random key");
        Gate {
            point,
            studio: studio.to_string(),
            attempt: attempt.map(String::from),
            base_path: base_path.to_string(),
            secure: connect_url.is_some_and(|u| u.starts_with("https://")),
            key,
            seen: Mutex::new(HashMap::new()),
            users: Mutex::new(HashMap::new()),
            revoked: Mutex::new(HashSet::new()),
        }
    }

    pub fn decide(
        &self,
        path: &str,
        query: Option<&str>,
        cookies: Option<&str>,
        now: i64,
    ) -> Decision {
        let params: Vec<(&str, &str)> = query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .collect();
        if let Some((_, token)) = params.iter().find(|(k, _)| *k == PARAM) {
            return match self.open_link(token, now) {
                Ok(user) => {
                    let rest: Vec<String> = params
                        .iter()
                        .filter(|(k, _)| *k != PARAM)
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    let location = if rest.is_empty() {
                        path.to_string()
                    } else {
                        format!("{path}?{}", rest.join("&"))
                    };
                    Decision::Enter {
                        set_cookie: self.cookie(&user, now),
                        location,
                    }
                }
                Err(message) => Decision::Refuse {
                    status: 403,
                    message,
                },
            };
        }
        let Some(user) = cookies.and_then(|c| self.cookie_user(c, now)) else {
            return Decision::Refuse {
                status: 401,
                message:
                    "open this studio from Studios (connect): this session needs a connect link"
                        .into(),
            };
        };
        if self
            .revoked
            .lock()
            .map(|r| r.contains(&user))
            .unwrap_or(true)
        {
            return Decision::Refuse {
                status: 403,
                message: "your access to this studio was revoked".into(),
            };
        }
        Decision::Forward { user }
    }

    fn open_link(&self, token: &str, now: i64) -> Result<String, String> {
        let bad = |why: &str| format!("this connect link cannot be used: {why}; connect again");
        let claims: LinkClaims =
            studios_protocol::claims::verify(&self.point, token).map_err(bad)?;
        if claims.st != self.studio {
            return Err(bad("it is for another studio"));
        }
        if let Some(attempt) = &self.attempt {
            if claims.att != *attempt {
                return Err(bad("it is for an earlier session of this studio"));
            }
        }
        let exp = claims.exp;
        if exp <= now {
            return Err(bad("it expired"));
        }
        let user = claims.sub.as_str();
        if user.is_empty() {
            return Err(bad("it names no user"));
        }
        let jti = claims.jti;
        let mut seen = self.seen.lock().map_err(|_| bad("internal error"))?;
        seen.retain(|_, until| *until > now);
        if jti.is_empty() || seen.insert(jti, exp).is_some() {
            return Err(bad("it was used already"));
        }
        drop(seen);
        if let Ok(mut revoked) = self.revoked.lock() {
            // A new link was made for them: their role was checked again.
            revoked.remove(user);
        }
        Ok(user.to_string())
    }

    fn sign(&self, user: &str, exp: i64) -> String {
        let tag = hmac::sign(&self.key, format!("{user}\n{exp}").as_bytes());
        URL_SAFE_NO_PAD.encode(tag.as_ref())
    }

    fn cookie(&self, user: &str, now: i64) -> String {
        let exp = now + COOKIE_SECONDS;
        if let Ok(mut users) = self.users.lock() {
            users.insert(user.to_string(), exp);
        }
        let value = format!(
            "{}.{exp}.{}",
            URL_SAFE_NO_PAD.encode(user),
            self.sign(user, exp)
        );
        format!(
            "{COOKIE}={value}; Path={}; Max-Age={COOKIE_SECONDS}; HttpOnly; SameSite=Lax{}",
            self.base_path,
            if self.secure { "; Secure" } else { "" }
        )
    }

    fn cookie_user(&self, header: &str, now: i64) -> Option<String> {
        header
            .split(';')
            .filter_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
            .find_map(|value| {
                let mut parts = value.split('.');
                let user = String::from_utf8(URL_SAFE_NO_PAD.decode(parts.next()?).ok()?).ok()?;
                let exp: i64 = parts.next()?.parse().ok()?;
                let tag = URL_SAFE_NO_PAD.decode(parts.next()?).ok()?;
                hmac::verify(&self.key, format!("{user}\n{exp}").as_bytes(), &tag).ok()?;
                (exp > now).then_some(user)
            })
    }

    /// Users holding a live cookie (the channel asks the control plane about them).
    pub fn users(&self, now: i64) -> Vec<String> {
        let mut users: Vec<String> = self
            .users
            .lock()
            .map(|u| {
                u.iter()
                    .filter(|(_, exp)| **exp > now)
                    .map(|(u, _)| u.clone())
                    .collect()
            })
            .unwrap_or_default();
        users.sort();
        users
    }

    /// Refuses these users from now on (their role no longer allows connecting).
    pub fn revoke(&self, users: &[String]) {
        if let Ok(mut revoked) = self.revoked.lock() {
            revoked.extend(users.iter().cloned());
        }
        if let Ok(mut live) = self.users.lock() {
            live.retain(|u, _| !users.contains(u));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

    struct Signer(EcdsaKeyPair);
    impl Signer {
        fn new() -> Signer {
            let rng = aws_lc_rs::rand::SystemRandom::new();
            let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            Signer(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap(),
            )
        }
        fn token(&self, claims: serde_json::Value) -> String {
            let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","typ":"JWT"}"#);
            let b = URL_SAFE_NO_PAD.encode(claims.to_string());
            let rng = aws_lc_rs::rand::SystemRandom::new();
            let sig = self.0.sign(&rng, format!("{h}.{b}").as_bytes()).unwrap();
            format!("{h}.{b}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
        }
    }

    fn claims(st: &str, att: &str, exp: i64, jti: &str) -> serde_json::Value {
        serde_json::json!({"sub": "carol", "name": "Carol", "ws": "ws-1", "st": st, "att": att, "iat": 0, "exp": exp, "jti": jti})
    }

    fn enter(gate: &Gate, token: &str) -> Decision {
        gate.decide(
            "/connect/st-1/",
            Some(&format!("{PARAM}={token}&x=1")),
            None,
            100,
        )
    }

    #[test]
    fn a_link_opens_the_session_once_and_the_cookie_carries_on() {
        let signer = Signer::new();
        let gate = Gate::new(
            signer.0.public_key().as_ref().to_vec(),
            "st-1",
            Some("a1"),
            "/connect/st-1/",
            Some("https://h/connect/st-1/"),
        );
        let token = signer.token(claims("st-1", "a1", 200, "j1"));
        let Decision::Enter {
            set_cookie,
            location,
        } = enter(&gate, &token)
        else {
            panic!("not entered");
        };
        assert_eq!(location, "/connect/st-1/?x=1");
        assert!(
            set_cookie
                .contains("; Path=/connect/st-1/; Max-Age=28800; HttpOnly; SameSite=Lax; Secure"),
            "{set_cookie}"
        );
        let cookie = set_cookie.split(';').next().unwrap().to_string();
        assert_eq!(
            gate.decide(
                "/connect/st-1/lab",
                None,
                Some(&format!("other=1; {cookie}")),
                150
            ),
            Decision::Forward {
                user: "carol".into()
            }
        );
        assert_eq!(gate.users(150), ["carol"]);
        // Used once only.
        assert!(
            matches!(enter(&gate, &token), Decision::Refuse { status: 403, message } if message.contains("used already"))
        );
        // The cookie ends; a forged or missing one is refused.
        assert!(matches!(
            gate.decide(
                "/connect/st-1/",
                None,
                Some(&cookie),
                100 + COOKIE_SECONDS + 1
            ),
            Decision::Refuse { status: 401, .. }
        ));
        let forged = cookie.replace("Y2Fyb2w", "ZGF2ZQ");
        assert!(matches!(
            gate.decide("/connect/st-1/", None, Some(&forged), 150),
            Decision::Refuse { status: 401, .. }
        ));
        assert!(matches!(
            gate.decide("/connect/st-1/", None, None, 150),
            Decision::Refuse { status: 401, .. }
        ));
        // Revoked: refused at once, even with a valid cookie.
        gate.revoke(&["carol".to_string()]);
        assert!(
            matches!(gate.decide("/connect/st-1/", None, Some(&cookie), 150), Decision::Refuse { status: 403, message } if message.contains("revoked"))
        );
        assert!(gate.users(150).is_empty());
    }

    #[test]
    fn links_for_other_studios_sessions_or_times_and_forgeries_are_refused() {
        let signer = Signer::new();
        let gate = Gate::new(
            signer.0.public_key().as_ref().to_vec(),
            "st-1",
            Some("a1"),
            "/connect/st-1/",
            None,
        );
        let refused = |token: &str, why: &str| match enter(&gate, token) {
            Decision::Refuse {
                status: 403,
                message,
            } => assert!(message.contains(why), "{message}"),
            other => panic!("{other:?}"),
        };
        refused(
            &signer.token(claims("st-2", "a1", 200, "a")),
            "another studio",
        );
        refused(
            &signer.token(claims("st-1", "a0", 200, "b")),
            "earlier session",
        );
        refused(&signer.token(claims("st-1", "a1", 100, "c")), "expired");
        refused(
            &Signer::new().token(claims("st-1", "a1", 200, "d")),
            "signature",
        );
        refused("not-a-token", "not a token");
        let good = signer.token(claims("st-1", "a1", 200, "e"));
        let (head, _) = good.rsplit_once('.').unwrap();
        refused(&format!("{head}.AAAA"), "signature");
        assert!(matches!(enter(&gate, &good), Decision::Enter { .. }));
    }
}
