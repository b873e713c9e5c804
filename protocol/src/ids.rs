//! The shape of resource ids: a kind prefix and 32 lowercase hex digits (a UUID v7
//! without dashes, so ids sort by creation).

/// The prefixes of ids.
pub const WORKSPACE: &str = "ws-";
pub const COMPUTE_ENV: &str = "ce-";
pub const DATA_LINK: &str = "dl-";
pub const STUDIO: &str = "st-";
pub const CHECKPOINT: &str = "cp-";

/// Whether `s` is `prefix` followed by 32 lowercase hex digits.
pub fn is_id(prefix: &str, s: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|rest| {
        rest.len() == 32
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_a_prefix_and_32_lowercase_hex_digits() {
        assert!(is_id(STUDIO, "st-019ac4b0f1e37d21a6b3c0d9e8f7a655"));
        assert!(!is_id(STUDIO, "st-019AC4B0F1E37D21A6B3C0D9E8F7A655"));
        assert!(!is_id(STUDIO, "st-short"));
        assert!(!is_id(STUDIO, "st-019ac4b0f1e37d21a6b3c0d9e8f7a6555"));
        assert!(!is_id(STUDIO, "ws-019ac4b0f1e37d21a6b3c0d9e8f7a655"));
        assert!(!is_id(WORKSPACE, "ws-../../etc"));
        assert!(!is_id(WORKSPACE, ""));
    }
}
