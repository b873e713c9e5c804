//! Reading a request: the caller from the JWT authorizer, path and query parameters,
//! and JSON bodies parsed strictly (duplicate keys refused, the field named in errors).

use crate::error::{Error, Missing, Result};
use crate::service::Caller;
use lambda_http::http::header;
use lambda_http::{Request, RequestExt};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The id a 500 quotes: Lambda's request id, else API Gateway's (`requestContext.requestId`).
pub fn request_id(req: &Request) -> String {
    req.lambda_context_ref()
        .map(|c| c.request_id.clone())
        .filter(|id| !id.is_empty())
        .or_else(|| match req.request_context_ref() {
            Some(lambda_http::request::RequestContext::ApiGatewayV2(c)) => c.request_id.clone(),
            _ => None,
        })
        .unwrap_or_default()
}

/// A request with a body must say it is JSON (`application/json`, any `+json` type, with
/// parameters such as `charset` or not); one without a Content-Type is read as JSON.
pub(super) fn json_content_type(req: &Request) -> Result<()> {
    let bytes: &[u8] = req.body().as_ref();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or_default();
    let essence = text
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        Ok(())
    } else {
        let shown: String = text.chars().take(100).collect();
        Err(Error::UnsupportedMediaType(format!("'{shown}'")))
    }
}

/// The caller from API Gateway's JWT authorizer: `sub`, with a display name from the
/// first non-empty of `name`, `email`, `cognito:username` (Cognito ID tokens) and
/// `username` (Cognito access tokens), else the subject itself.
pub fn caller(req: &Request) -> Result<Caller> {
    let claims = req
        .request_context_ref()
        .and_then(|c| c.authorizer())
        .and_then(|a| a.jwt.as_ref())
        .map(|jwt| &jwt.claims)
        .ok_or(Error::Unauthenticated)?;
    let id = claims
        .get("sub")
        .filter(|s| !s.is_empty())
        .ok_or(Error::Unauthenticated)?;
    let name = ["name", "email", "cognito:username", "username"]
        .iter()
        .find_map(|k| claims.get(*k).filter(|v| !v.is_empty()))
        .unwrap_or(id);
    Ok(Caller {
        id: id.clone(),
        name: name.clone(),
        api_url: api_url(req),
    })
}

/// The API's URL as the request reached it: `https://<domainName>[/<stage>]`.
pub(super) fn api_url(req: &Request) -> Option<String> {
    let lambda_http::request::RequestContext::ApiGatewayV2(c) = req.request_context_ref()? else {
        return None;
    };
    let domain = c.domain_name.as_deref().filter(|d| !d.is_empty())?;
    let scheme = if domain == "localhost" || domain.starts_with("127.0.0.1") {
        "http"
    } else {
        "https"
    };
    Some(
        match c
            .stage
            .as_deref()
            .filter(|s| !s.is_empty() && *s != "$default")
        {
            Some(stage) => format!("{scheme}://{domain}/{stage}"),
            None => format!("{scheme}://{domain}"),
        },
    )
}

pub(super) fn path_param<'a>(req: &'a Request, name: &str) -> Result<&'a str> {
    req.path_parameters_ref()
        .and_then(|p| p.first(name))
        .ok_or(Error::NotFound(Missing::Route))
}

pub(super) fn query_param<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.query_string_parameters_ref()
        .and_then(|q| q.first(name))
}

/// A JSON body that may be absent.
pub fn optional_body<T: DeserializeOwned>(req: &Request) -> Result<Option<T>> {
    let bytes: &[u8] = req.body().as_ref();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    body(req).map(Some)
}

/// Parses a JSON body; the error names the offending field (`resources.cpus`) and rule.
pub fn body<T: DeserializeOwned>(req: &Request) -> Result<T> {
    let bytes: &[u8] = req.body().as_ref();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::invalid("body", "a JSON object is required"));
    }
    let value: Value = serde_json::from_slice::<StrictJson>(bytes)
        .map(|v| v.0)
        .map_err(|e| {
            Error::invalid(
                "body",
                format!("is not valid JSON: {}", strip_position(&e.to_string())),
            )
        })?;
    if !value.is_object() {
        return Err(Error::invalid("body", "must be a JSON object"));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = strip_position(&e.into_inner().to_string());
        // serde reports a missing field at its parent; name the field itself.
        if let Some(field) = message
            .strip_prefix("missing field `")
            .and_then(|m| m.strip_suffix('`'))
        {
            let full = if path == "." {
                field.to_string()
            } else {
                format!("{path}.{field}")
            };
            return Error::invalid(full, "is required");
        }
        let field = if path == "." {
            "body".to_string()
        } else {
            path
        };
        Error::invalid(field, message)
    })
}

/// JSON whose objects have no key twice (serde_json keeps the last one silently; a
/// client sending `{"role": "view", "role": "owner"}` should hear about it).
struct StrictJson(Value);

impl<'de> serde::Deserialize<'de> for StrictJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictJson)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> std::result::Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictJson(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                let shown: String = key.chars().take(64).collect();
                return Err(serde::de::Error::custom(format!(
                    "the key \"{shown}\" appears twice in one object"
                )));
            }
            let StrictJson(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

pub(super) fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}
