//! The studio list's `search` parameter: free text on the name plus `author:`,
//! `computeEnv:` and `status:` keywords. Values may be quoted: `author:"Ada L"`.

use super::status::StudioStatus;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StudioFilter {
    /// Lower-cased words that must all appear in the studio's name.
    pub text: Vec<String>,
    /// Matches the author's id exactly or a part of their name (case-insensitive).
    pub author: Option<String>,
    /// Matches the compute environment's id exactly or a part of its name (case-insensitive).
    pub compute_env: Option<String>,
    pub status: Option<StudioStatus>,
}

impl StudioFilter {
    pub fn is_empty(&self) -> bool {
        self == &StudioFilter::default()
    }
}

/// Parses a search string; the error is the rule broken (reported on field `search`).
pub fn parse_search(input: &str) -> Result<StudioFilter, String> {
    if input.chars().count() > 256 {
        return Err("must be at most 256 characters".into());
    }
    let mut filter = StudioFilter::default();
    for token in tokenize(input)? {
        let keyword = token
            .split_once(':')
            .filter(|(k, v)| !v.is_empty() && !k.is_empty());
        match keyword {
            Some((k, v)) if k.eq_ignore_ascii_case("author") => {
                set_once(&mut filter.author, v.to_lowercase(), "author")?
            }
            Some((k, v)) if k.eq_ignore_ascii_case("computeEnv") => {
                set_once(&mut filter.compute_env, v.to_lowercase(), "computeEnv")?
            }
            Some((k, v)) if k.eq_ignore_ascii_case("status") => {
                let status = StudioStatus::parse(v).ok_or_else(|| {
                    format!(
                        "unknown status '{v}'; expected one of stopped, starting, running, stopping, errored"
                    )
                })?;
                set_once(&mut filter.status, status, "status")?
            }
            _ => filter.text.push(token.to_lowercase()),
        }
    }
    Ok(filter)
}

fn set_once<T>(slot: &mut Option<T>, value: T, keyword: &str) -> Result<(), String> {
    if slot.replace(value).is_some() {
        return Err(format!("the keyword '{keyword}:' may appear only once"));
    }
    Ok(())
}

/// Splits on whitespace, keeping double-quoted runs together (quotes removed).
fn tokenize(input: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in input.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !current.is_empty() {
                    tokens.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if quoted {
        return Err("has an unclosed double quote".into());
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_text_and_keywords() {
        let f =
            parse_search(r#"RNA  author:"Ada L" computeEnv:gpu-queue status:Running seq"#).unwrap();
        assert_eq!(f.text, vec!["rna", "seq"]);
        assert_eq!(f.author.as_deref(), Some("ada l"));
        assert_eq!(f.compute_env.as_deref(), Some("gpu-queue"));
        assert_eq!(f.status, Some(StudioStatus::Running));
    }

    #[test]
    fn empty_search_is_no_filter() {
        assert!(parse_search("   ").unwrap().is_empty());
    }

    #[test]
    fn unknown_keywords_and_bare_colons_are_text() {
        let f = parse_search("team:x author: :y").unwrap();
        assert_eq!(f.text, vec!["team:x", "author:", ":y"]);
        assert_eq!(f.author, None);
    }

    #[test]
    fn bad_status_repeated_keyword_and_open_quote_are_errors() {
        assert!(parse_search("status:paused")
            .unwrap_err()
            .contains("unknown status 'paused'"));
        assert!(parse_search("author:a author:b")
            .unwrap_err()
            .contains("only once"));
        assert!(parse_search("author:\"ada").unwrap_err().contains("quote"));
    }
}
