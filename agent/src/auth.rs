//! Who may use the session (docs/agent.md, "Connect"): a connect link's token (ES256,
//! signed by the control plane, checked with the public key in `STUDIO_CONNECT_PUBLIC_KEY`)
//! must name this studio and this session, be unexpired and unused; opening it sets an
//! HttpOnly host-only cookie (the studio's own origin: docs/security.md, "Browser
//! origins"), signed by the agent, valid `COOKIE_SECONDS`: `__Host-studios-session` on
//! https, `studios-session` on the local run's http (browsers refuse the `__Host-`
//! prefix without `Secure`). Every other request needs that cookie, which is taken off
//! before the request reaches the IDE. WebSocket upgrades and requests other than
//! GET/HEAD/OPTIONS that carry an `Origin` must carry the studio's own. Users whose
//! access was revoked (the channel says so) are refused from then on.

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use studios_protocol::claims::LinkClaims;

pub use studios_protocol::claims::PARAM;
/// The cookie on http (the local run).
pub const COOKIE: &str = "studios-session";
/// The cookie on https: host-only, `Secure`, `Path=/` (RFC 6265bis, 4.1.3.2).
pub const HOST_COOKIE: &str = "__Host-studios-session";
/// A cookie's life: after it, the user opens a new link (their role checked again).
pub const COOKIE_SECONDS: i64 = 8 * 3600;

pub struct Gate {
    point: Vec<u8>,
    studio: String,
    attempt: Option<String>,
    base_path: String,
    secure: bool,
    /// The studio's origin (`scheme://host[:port]` of its connect URL).
    origin: Option<String>,
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
            origin: connect_url.and_then(origin_of),
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

    /// The cookie's name: [`HOST_COOKIE`] on https, [`COOKIE`] on http.
    pub fn cookie_name(&self) -> &'static str {
        if self.secure {
            HOST_COOKIE
        } else {
            COOKIE
        }
    }

    /// Whether a request may go on as far as its `Origin` says: a WebSocket upgrade or a
    /// request other than GET/HEAD/OPTIONS from another origin (another studio's page
    /// included, which is same-site) is refused; without an `Origin` (no browser sends
    /// such a request without one) or without a connect URL to compare with, it may.
    pub fn origin_allowed(&self, method: &str, upgrade: bool, origin: Option<&str>) -> bool {
        let safe = matches!(method, "GET" | "HEAD" | "OPTIONS");
        match (&self.origin, origin) {
            (Some(own), Some(origin)) if upgrade || !safe => {
                origin.trim().eq_ignore_ascii_case(own)
            }
            _ => true,
        }
    }

    /// The `Cookie` header without the agent's own cookie (the IDE never sees it);
    /// `None` when nothing else is left.
    pub fn strip_cookie(&self, header: &str) -> Option<String> {
        let name = self.cookie_name();
        let rest: Vec<&str> = header
            .split(';')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .filter(|c| c.split_once('=').map_or(*c, |(n, _)| n).trim() != name)
            .collect();
        (!rest.is_empty()).then(|| rest.join("; "))
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
        // Host-only (no Domain): another studio's host never gets it.
        if self.secure {
            format!("{HOST_COOKIE}={value}; Path=/; Max-Age={COOKIE_SECONDS}; HttpOnly; SameSite=Lax; Secure")
        } else {
            format!(
                "{COOKIE}={value}; Path={}; Max-Age={COOKIE_SECONDS}; HttpOnly; SameSite=Lax",
                self.base_path
            )
        }
    }

    fn cookie_user(&self, header: &str, now: i64) -> Option<String> {
        header
            .split(';')
            .filter_map(|c| c.trim().strip_prefix(self.cookie_name())?.strip_prefix('='))
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

/// `scheme://host[:port]` of an http(s) URL, lower-cased (what browsers send as `Origin`).
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let authority = authority.to_ascii_lowercase();
    let default = if scheme == "https" { ":443" } else { ":80" };
    let authority = authority.strip_suffix(default).unwrap_or(&authority);
    Some(format!("{scheme}://{authority}"))
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
        gate.decide("/", Some(&format!("{PARAM}={token}&x=1")), None, 100)
    }

    #[test]
    fn a_link_opens_the_session_once_and_the_cookie_carries_on() {
        let signer = Signer::new();
        let gate = Gate::new(
            signer.0.public_key().as_ref().to_vec(),
            "st-1",
            Some("a1"),
            "/",
            Some("https://st-1.connect.example/"),
        );
        let token = signer.token(claims("st-1", "a1", 200, "j1"));
        let Decision::Enter {
            set_cookie,
            location,
        } = enter(&gate, &token)
        else {
            panic!("not entered");
        };
        assert_eq!(location, "/?x=1");
        // Host-only (no Domain), on https with the __Host- prefix and what it requires.
        assert!(
            set_cookie.starts_with("__Host-studios-session=")
                && set_cookie.ends_with("; Path=/; Max-Age=28800; HttpOnly; SameSite=Lax; Secure"),
            "{set_cookie}"
        );
        assert!(!set_cookie.contains("Domain"));
        let cookie = set_cookie.split(';').next().unwrap().to_string();
        assert_eq!(
            gate.decide("/lab", None, Some(&format!("other=1; {cookie}")), 150),
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
            gate.decide("/", None, Some(&cookie), 100 + COOKIE_SECONDS + 1),
            Decision::Refuse { status: 401, .. }
        ));
        let forged = cookie.replace("Y2Fyb2w", "ZGF2ZQ");
        assert!(matches!(
            gate.decide("/", None, Some(&forged), 150),
            Decision::Refuse { status: 401, .. }
        ));
        assert!(matches!(
            gate.decide("/", None, None, 150),
            Decision::Refuse { status: 401, .. }
        ));
        // Revoked: refused at once, even with a valid cookie.
        gate.revoke(&["carol".to_string()]);
        assert!(
            matches!(gate.decide("/", None, Some(&cookie), 150), Decision::Refuse { status: 403, message } if message.contains("revoked"))
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
            "/",
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

    #[test]
    fn on_http_the_cookie_has_no_prefix_and_is_still_host_only() {
        let signer = Signer::new();
        let point = signer.0.public_key().as_ref().to_vec();
        let gate = Gate::new(
            point,
            "st-1",
            None,
            "/",
            Some("http://st-1.localhost:8080/"),
        );
        let Decision::Enter { set_cookie, .. } =
            enter(&gate, &signer.token(claims("st-1", "a1", 200, "j")))
        else {
            panic!("not entered");
        };
        assert!(set_cookie.starts_with("studios-session="), "{set_cookie}");
        assert!(set_cookie.ends_with("; Path=/; Max-Age=28800; HttpOnly; SameSite=Lax"));
        assert!(!set_cookie.contains("Domain"));
        // The https name is not taken on http, nor the other way round.
        let value = set_cookie.split(';').next().unwrap();
        let other = format!("__Host-{value}");
        assert!(matches!(
            gate.decide("/", None, Some(&other), 150),
            Decision::Refuse { status: 401, .. }
        ));
    }

    #[test]
    fn the_agents_cookie_never_reaches_the_ide() {
        let point = Signer::new().0.public_key().as_ref().to_vec();
        let gate = Gate::new(point, "st-1", None, "/", Some("https://st-1.c.example/"));
        assert_eq!(
            gate.strip_cookie("a=1; __Host-studios-session=x.1.y;b=2; studios-session-x=3")
                .as_deref(),
            Some("a=1; b=2; studios-session-x=3")
        );
        assert_eq!(gate.strip_cookie(" __Host-studios-session=x "), None);
    }

    #[test]
    fn upgrades_and_unsafe_requests_from_another_origin_are_refused() {
        let point = Signer::new().0.public_key().as_ref().to_vec();
        let gate = Gate::new(
            point.clone(),
            "st-1",
            None,
            "/",
            Some("https://ST-1.c.example:443/lab"),
        );
        let own = Some("https://st-1.c.example");
        let other = Some("https://st-2.c.example");
        assert!(gate.origin_allowed("GET", true, own));
        assert!(gate.origin_allowed("POST", false, own));
        assert!(!gate.origin_allowed("GET", true, other));
        assert!(!gate.origin_allowed("POST", false, other));
        assert!(!gate.origin_allowed("DELETE", false, Some("null")));
        assert!(!gate.origin_allowed("GET", true, Some("http://st-1.c.example")));
        assert!(gate.origin_allowed("GET", false, other));
        assert!(gate.origin_allowed("GET", true, None));
        let local = Gate::new(
            point,
            "st-1",
            None,
            "/",
            Some("http://st-1.localhost:8080/"),
        );
        assert!(local.origin_allowed("GET", true, Some("http://st-1.localhost:8080")));
        assert!(!local.origin_allowed("GET", true, Some("http://st-1.localhost:8081")));
    }
}
