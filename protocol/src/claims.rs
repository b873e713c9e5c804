//! Signed claims (docs/api.md, "Connect links"): compact ES256 JWS tokens signed by the
//! control plane and checked with the public key only (the uncompressed P-256 point).
//! A connect link's token is checked by the session's agent, a relay token by the
//! connect relay.

use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;

/// The query parameter that carries a connect link's token.
pub const PARAM: &str = "studio_token";
/// How long a link may be opened after it was made.
pub const LINK_SECONDS: i64 = 120;
/// How long a relay token lasts. The agent asks for a fresh one over its channel well
/// before then, so a token copied out of a session is worth an hour at most, and none
/// is issued once the session has ended (docs/security.md, "The relay").
pub const RELAY_TOKEN_SECONDS: i64 = 3600;
/// How long before its expiry an agent asks for the next relay token.
pub const RELAY_TOKEN_REFRESH_SECONDS: i64 = 20 * 60;
/// The audience of relay tokens.
pub const RELAY_AUDIENCE: &str = "relay";

/// A connect link's claims.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LinkClaims {
    /// The user (JWT `sub`) and their display name.
    pub sub: String,
    pub name: String,
    pub ws: String,
    pub st: String,
    /// The session attempt: a link never opens a later (or earlier) session.
    pub att: String,
    pub iat: i64,
    pub exp: i64,
    /// Single use: the session refuses a token it has seen.
    pub jti: String,
}

/// What a session shows the connect relay to get its tunnel (`aud` `relay`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct RelayClaims {
    pub aud: String,
    pub st: String,
    pub att: String,
    pub iat: i64,
    pub exp: i64,
}

impl RelayClaims {
    /// A relay token's claims for the session `att` of studio `st`, made at `now`.
    pub fn new(st: String, att: String, now: i64) -> RelayClaims {
        RelayClaims {
            aud: RELAY_AUDIENCE.to_string(),
            st,
            att,
            iat: now,
            exp: now + RELAY_TOKEN_SECONDS,
        }
    }

    /// The studio and session a relay token names, if it is valid at `now`.
    pub fn verify(point: &[u8], token: &str, now: i64) -> Result<(String, String), &'static str> {
        let claims: RelayClaims = verify(point, token)?;
        if claims.aud != RELAY_AUDIENCE {
            return Err("not a relay token");
        }
        if claims.exp <= now {
            return Err("expired");
        }
        if claims.st.is_empty() {
            return Err("names no session");
        }
        Ok((claims.st, claims.att))
    }
}

/// A boxed future (the trait is used as `dyn Signer`).
pub type SignFuture<'a, T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'a>>;

/// An ES256 key that signs (the control plane's: KMS on AWS, a key in memory locally).
pub trait Signer: Send + Sync {
    type Error;
    /// ES256 (P-256, SHA-256) signature of `message`, as JWS wants it: r ‖ s.
    fn sign<'a>(&'a self, message: &'a [u8]) -> SignFuture<'a, Vec<u8>, Self::Error>;
    /// The public key: the uncompressed P-256 point (65 bytes).
    fn public_key(&self) -> SignFuture<'_, Vec<u8>, Self::Error>;
}

const HEADER: &[u8] = br#"{"alg":"ES256","typ":"JWT"}"#;

/// A compact JWS (`header.claims.signature`) of `claims`.
pub async fn sign<S, T>(signer: &S, claims: &T) -> Result<String, S::Error>
where
    S: Signer + ?Sized,
    T: Serialize,
{
    let header = URL_SAFE_NO_PAD.encode(HEADER);
    let body =
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims of strings and numbers"));
    let input = format!("{header}.{body}");
    let signature = signer.sign(input.as_bytes()).await?;
    Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

/// The claims of a compact ES256 JWS signed by the key `point`, or why not.
pub fn verify<T: DeserializeOwned>(point: &[u8], token: &str) -> Result<T, &'static str> {
    let mut parts = token.split('.');
    let (Some(header), Some(body), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("it is not a token");
    };
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| "it is not a token")?;
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
        .verify(format!("{header}.{body}").as_bytes(), &sig)
        .map_err(|_| "its signature is not Studios'")?;
    let header: serde_json::Value = decode(header).ok_or("it is not a token")?;
    if header["alg"] != "ES256" {
        return Err("it is not a token");
    }
    decode(body).ok_or("it is not a token")
}

fn decode<T: DeserializeOwned>(part: &str) -> Option<T> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
}

/// `url` with a link's token as its query parameter.
pub fn with_token(url: &str, token: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{PARAM}={token}")
}

/// A DER ECDSA signature (`SEQUENCE { INTEGER r, INTEGER s }`) as JWS's fixed r ‖ s.
pub fn der_to_fixed(der: &[u8]) -> Option<Vec<u8>> {
    let (tag, body) = (der.first()?, der.get(2..)?);
    if *tag != 0x30 || der.get(1).copied()? as usize != body.len() {
        return None;
    }
    let mut out = Vec::with_capacity(64);
    let mut rest = body;
    for _ in 0..2 {
        if rest.first() != Some(&0x02) {
            return None;
        }
        let len = *rest.get(1)? as usize;
        let int = rest.get(2..2 + len)?;
        let int = match int {
            [0, tail @ ..] => tail,
            all => all,
        };
        if int.len() > 32 {
            return None;
        }
        out.extend(std::iter::repeat_n(0u8, 32 - int.len()));
        out.extend_from_slice(int);
        rest = &rest[2 + len..];
    }
    rest.is_empty().then_some(out)
}

/// The point of a P-256 SubjectPublicKeyInfo (its last 65 bytes, checked).
pub fn point_of_spki(spki: &[u8]) -> Option<Vec<u8>> {
    let point = spki.get(spki.len().checked_sub(65)?..)?;
    (spki.len() == 91 && point[0] == 0x04).then(|| point.to_vec())
}

/// Whether `point` is an uncompressed P-256 point (its shape; the key is checked on use).
pub fn is_point(point: &[u8]) -> bool {
    point.len() == 65 && point[0] == 4
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

    struct Key(EcdsaKeyPair);

    impl Key {
        fn new() -> Key {
            let rng = aws_lc_rs::rand::SystemRandom::new();
            let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            Key(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap())
        }
        fn point(&self) -> Vec<u8> {
            self.0.public_key().as_ref().to_vec()
        }
    }

    impl Signer for Key {
        type Error = String;
        fn sign<'a>(&'a self, message: &'a [u8]) -> SignFuture<'a, Vec<u8>, String> {
            Box::pin(async move {
                let rng = aws_lc_rs::rand::SystemRandom::new();
                self.0
                    .sign(&rng, message)
                    .map(|s| s.as_ref().to_vec())
                    .map_err(|_| "signing failed".to_string())
            })
        }
        fn public_key(&self) -> SignFuture<'_, Vec<u8>, String> {
            Box::pin(async move { Ok(self.point()) })
        }
    }

    /// Runs a future that never waits (the signers here do not).
    fn now<F: Future>(f: F) -> F::Output {
        use std::task::{Context, Poll, Waker};
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("the future waited"),
        }
    }

    fn link() -> LinkClaims {
        LinkClaims {
            sub: "carol".into(),
            name: "Carol".into(),
            ws: "ws-1".into(),
            st: "st-1".into(),
            att: "a1".into(),
            iat: 1,
            exp: 121,
            jti: "j".into(),
        }
    }

    #[test]
    fn link_claims_round_trip_and_only_their_key_verifies_them() {
        let key = Key::new();
        let token = now(sign(&key, &link())).unwrap();
        assert!(token.starts_with("eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9."));
        assert_eq!(verify::<LinkClaims>(&key.point(), &token), Ok(link()));
        assert_eq!(
            verify::<LinkClaims>(&Key::new().point(), &token),
            Err("its signature is not Studios'")
        );
        let (head, _) = token.rsplit_once('.').unwrap();
        assert_eq!(
            verify::<LinkClaims>(&key.point(), &format!("{head}.AAAA")),
            Err("its signature is not Studios'")
        );
        assert_eq!(
            verify::<LinkClaims>(&key.point(), "not-a-token"),
            Err("it is not a token")
        );
        assert_eq!(
            verify::<LinkClaims>(&key.point(), &format!("{token}.x")),
            Err("it is not a token")
        );
        assert_eq!(
            verify::<LinkClaims>(&key.point(), "a.b.!!"),
            Err("it is not a token")
        );
        // The wire names of the claims.
        let json = serde_json::to_value(link()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"sub": "carol", "name": "Carol", "ws": "ws-1", "st": "st-1", "att": "a1", "iat": 1, "exp": 121, "jti": "j"})
        );
        assert_eq!(
            with_token("https://h/connect/st-1/", "t"),
            "https://h/connect/st-1/?studio_token=t"
        );
        assert_eq!(
            with_token("https://h/?a=1", "t"),
            "https://h/?a=1&studio_token=t"
        );
    }

    #[test]
    fn a_signed_token_with_another_algorithm_is_refused() {
        let key = Key::new();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let body = URL_SAFE_NO_PAD.encode(br#"{"st":"st-1"}"#);
        let input = format!("{header}.{body}");
        let sig = now(key.sign(input.as_bytes())).unwrap();
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig));
        assert_eq!(
            verify::<LinkClaims>(&key.point(), &token),
            Err("it is not a token")
        );
    }

    #[test]
    fn relay_tokens_name_a_session_of_a_studio_until_they_expire() {
        let key = Key::new();
        let claims = RelayClaims::new("st-1".into(), "a1".into(), 100);
        assert_eq!(claims.exp, 100 + RELAY_TOKEN_SECONDS);
        assert_eq!(
            serde_json::to_value(&claims).unwrap(),
            serde_json::json!({"aud": "relay", "st": "st-1", "att": "a1", "iat": 100, "exp": 100 + RELAY_TOKEN_SECONDS})
        );
        let token = now(sign(&key, &claims)).unwrap();
        assert_eq!(
            RelayClaims::verify(&key.point(), &token, 101),
            Ok(("st-1".to_string(), "a1".to_string()))
        );
        assert_eq!(
            RelayClaims::verify(&key.point(), &token, claims.exp),
            Err("expired")
        );
        // A connect link is no relay token.
        let link = now(sign(&key, &link())).unwrap();
        assert_eq!(
            RelayClaims::verify(&key.point(), &link, 101),
            Err("not a relay token")
        );
        let nobody = now(sign(
            &key,
            &RelayClaims::new(String::new(), "a1".into(), 100),
        ))
        .unwrap();
        assert_eq!(
            RelayClaims::verify(&key.point(), &nobody, 101),
            Err("names no session")
        );
        assert_eq!(
            RelayClaims::verify(&Key::new().point(), &token, 101),
            Err("its signature is not Studios'")
        );
    }

    #[test]
    fn kms_signatures_become_fixed_size() {
        // r with a leading zero (high bit set), s short.
        let mut der = vec![0x30, 0x00, 0x02, 33, 0x00];
        der.extend([0x80u8; 32]);
        der.extend([0x02, 31]);
        der.extend([0x11u8; 31]);
        der[1] = (der.len() - 2) as u8;
        let fixed = der_to_fixed(&der).unwrap();
        assert_eq!(fixed.len(), 64);
        assert_eq!(&fixed[..32], &[0x80u8; 32]);
        assert_eq!(fixed[32], 0);
        assert_eq!(&fixed[33..], &[0x11u8; 31]);
        assert!(der_to_fixed(&[0x31, 0]).is_none());
        assert!(der_to_fixed(&[]).is_none());
        let mut spki = vec![0u8; 26];
        spki.push(0x04);
        spki.extend([7u8; 64]);
        assert_eq!(point_of_spki(&spki).unwrap().len(), 65);
        assert!(point_of_spki(&spki[1..]).is_none());
        assert!(is_point(&point_of_spki(&spki).unwrap()));
        assert!(!is_point(&[4u8; 64]));
    }
}
