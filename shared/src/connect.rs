//! Connect links (docs/api.md, "Connect links"): `POST …/connect` answers the studio's URL
//! with a short-lived token that binds the user, the studio and the session attempt,
//! signed ES256 by the control plane. Sessions hold only the public key (their agent
//! checks the token, then sets its own cookie). On AWS the key is a KMS asymmetric key
//! of the stack (`CONNECT_SIGNING_KEY_ID`); locally a key made at start-up
//! (`CONNECT_SIGNING_KEY`, PKCS#8, base64).

use crate::error::{Error, Result};
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::Serialize;

/// How long a link may be opened after it was made.
pub const LINK_SECONDS: i64 = 120;
/// The query parameter that carries the token.
pub const PARAM: &str = "studio_token";

#[derive(Clone, Debug, Serialize, PartialEq)]
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

#[async_trait::async_trait]
pub trait Signer: Send + Sync {
    /// ES256 (P-256, SHA-256) signature of `message`, as JWS wants it: r ‖ s.
    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>>;
    /// The public key: the uncompressed P-256 point (65 bytes).
    async fn public_key(&self) -> Result<Vec<u8>>;
}

/// A key in memory (the local run and tests).
pub struct LocalSigner {
    pair: EcdsaKeyPair,
}

impl LocalSigner {
    /// A new key; its PKCS#8 document (base64) for `from_pkcs8`.
    pub fn generate() -> Result<String> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| Error::internal("cannot make a P-256 key"))?;
        Ok(STANDARD.encode(doc.as_ref()))
    }

    pub fn from_pkcs8(base64: &str) -> Result<LocalSigner> {
        let der = STANDARD
            .decode(base64.trim())
            .map_err(|_| Error::internal("CONNECT_SIGNING_KEY is not base64"))?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
            .map_err(|_| Error::internal("CONNECT_SIGNING_KEY is not a P-256 PKCS#8 key"))?;
        Ok(LocalSigner { pair })
    }
}

#[async_trait::async_trait]
impl Signer for LocalSigner {
    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.pair
            .sign(&rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| Error::internal("signing failed"))
    }
    async fn public_key(&self) -> Result<Vec<u8>> {
        Ok(self.pair.public_key().as_ref().to_vec())
    }
}

/// The stack's KMS key (`ECC_NIST_P256`, `SIGN_VERIFY`): `kms:Sign` per link,
/// `kms:GetPublicKey` once per cold start of the functions that start sessions.
pub struct KmsSigner {
    client: aws_sdk_kms::Client,
    key_id: String,
    public: tokio::sync::OnceCell<Vec<u8>>,
}

impl KmsSigner {
    pub fn new(client: aws_sdk_kms::Client, key_id: String) -> KmsSigner {
        KmsSigner {
            client,
            key_id,
            public: tokio::sync::OnceCell::new(),
        }
    }
}

#[async_trait::async_trait]
impl Signer for KmsSigner {
    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};
        let out = self
            .client
            .sign()
            .key_id(&self.key_id)
            .message(aws_sdk_kms::primitives::Blob::new(message))
            .message_type(MessageType::Raw)
            .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
            .send()
            .await
            .map_err(crate::error::aws)?;
        let der = out
            .signature()
            .ok_or_else(|| Error::internal("KMS returned no signature"))?;
        der_to_fixed(der.as_ref()).ok_or_else(|| Error::internal("unreadable KMS signature"))
    }

    async fn public_key(&self) -> Result<Vec<u8>> {
        self.public
            .get_or_try_init(|| async {
                let out = self
                    .client
                    .get_public_key()
                    .key_id(&self.key_id)
                    .send()
                    .await
                    .map_err(crate::error::aws)?;
                let spki = out
                    .public_key()
                    .ok_or_else(|| Error::internal("KMS returned no public key"))?;
                point_of_spki(spki.as_ref())
                    .ok_or_else(|| Error::internal("the connect key is not a P-256 key"))
            })
            .await
            .cloned()
    }
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

/// The signer `key` names (a bad local key is a configuration error: logged, no links).
pub fn signer(
    sdk: &aws_config::SdkConfig,
    key: &crate::config::ConnectKey,
) -> Option<std::sync::Arc<dyn Signer>> {
    use crate::config::ConnectKey;
    match key {
        ConnectKey::None => None,
        ConnectKey::Kms(id) => Some(std::sync::Arc::new(KmsSigner::new(
            aws_sdk_kms::Client::new(sdk),
            id.clone(),
        ))),
        ConnectKey::Local(pkcs8) => match LocalSigner::from_pkcs8(pkcs8) {
            Ok(s) => Some(std::sync::Arc::new(s)),
            Err(e) => {
                tracing::error!(error = %e, "connect links are not signed");
                None
            }
        },
    }
}

/// A connect link's token.
pub async fn sign_link(signer: &dyn Signer, claims: &LinkClaims) -> Result<String> {
    sign_claims(signer, claims).await
}

/// What a session shows the connect relay to get its tunnel (`aud` `relay`).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RelayClaims {
    pub aud: &'static str,
    pub st: String,
    pub att: String,
    pub iat: i64,
    pub exp: i64,
}

/// How long a relay token lasts (longer than any session is expected to run).
pub const RELAY_TOKEN_SECONDS: i64 = 30 * 24 * 3600;

/// A compact JWS (`header.claims.signature`).
pub async fn sign_claims<T: Serialize + Sync>(signer: &dyn Signer, claims: &T) -> Result<String> {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).map_err(Error::internal)?);
    let input = format!("{header}.{body}");
    let signature = signer.sign(input.as_bytes()).await?;
    Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

/// `url` with the link's token as its query parameter.
pub fn with_token(url: &str, token: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{PARAM}={token}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};

    #[tokio::test]
    async fn links_are_es256_and_verify_with_the_public_key_only() {
        let signer = LocalSigner::from_pkcs8(&LocalSigner::generate().unwrap()).unwrap();
        let claims = LinkClaims {
            sub: "carol".into(),
            name: "Carol".into(),
            ws: "ws-1".into(),
            st: "st-1".into(),
            att: "a1".into(),
            iat: 1,
            exp: 121,
            jti: "j".into(),
        };
        let token = sign_link(&signer, &claims).await.unwrap();
        let (input, sig) = token.rsplit_once('.').unwrap();
        let point = signer.public_key().await.unwrap();
        assert_eq!(point.len(), 65);
        let key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point);
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        assert!(key.verify(input.as_bytes(), &sig).is_ok());
        assert!(key.verify(b"tampered", &sig).is_err());
        assert_eq!(
            with_token("https://h/connect/st-1/", "t"),
            "https://h/connect/st-1/?studio_token=t"
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
        let mut spki = vec![0u8; 26];
        spki.push(0x04);
        spki.extend([7u8; 64]);
        assert_eq!(point_of_spki(&spki).unwrap().len(), 65);
        assert!(point_of_spki(&spki[1..]).is_none());
    }
}
