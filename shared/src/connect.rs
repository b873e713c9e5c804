//! Connect links (docs/api.md, "Connect links"): `POST …/connect` answers the studio's URL
//! with a short-lived token that binds the user, the studio and the session attempt,
//! signed ES256 by the control plane. Sessions hold only the public key (their agent
//! checks the token, then sets its own cookie). On AWS the key is a KMS asymmetric key
//! of the stack (`CONNECT_SIGNING_KEY_ID`); locally a key made at start-up
//! (`CONNECT_SIGNING_KEY`, PKCS#8, base64).

use crate::error::{Error, Result};
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// The claims, their signing and checking are the protocol crate's (the sessions' agent
/// and the relay check them with the same code).
pub use studios_protocol::claims::{
    der_to_fixed, point_of_spki, with_token, LinkClaims, RelayClaims, SignFuture, Signer,
    LINK_SECONDS, PARAM, RELAY_TOKEN_SECONDS,
};

/// A signer of the control plane (its failures are the API's errors).
pub type DynSigner = dyn Signer<Error = Error>;

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

impl Signer for LocalSigner {
    type Error = Error;
    fn sign<'a>(&'a self, message: &'a [u8]) -> SignFuture<'a, Vec<u8>, Error> {
        Box::pin(async move {
            let rng = aws_lc_rs::rand::SystemRandom::new();
            self.pair
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| Error::internal("signing failed"))
        })
    }
    fn public_key(&self) -> SignFuture<'_, Vec<u8>, Error> {
        Box::pin(async move { Ok(self.pair.public_key().as_ref().to_vec()) })
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

impl Signer for KmsSigner {
    type Error = Error;
    fn sign<'a>(&'a self, message: &'a [u8]) -> SignFuture<'a, Vec<u8>, Error> {
        Box::pin(self.sign_with_kms(message))
    }

    fn public_key(&self) -> SignFuture<'_, Vec<u8>, Error> {
        Box::pin(self.public_key_of_kms())
    }
}

impl KmsSigner {
    async fn sign_with_kms(&self, message: &[u8]) -> Result<Vec<u8>> {
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

    async fn public_key_of_kms(&self) -> Result<Vec<u8>> {
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

/// The signer `key` names (a bad local key is a configuration error: logged, no links).
pub fn signer(
    sdk: &aws_config::SdkConfig,
    key: &crate::config::ConnectKey,
) -> Option<std::sync::Arc<DynSigner>> {
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
pub async fn sign_link(signer: &DynSigner, claims: &LinkClaims) -> Result<String> {
    studios_protocol::claims::sign(signer, claims).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

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
}
