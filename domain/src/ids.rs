//! Resource ids: a kind prefix and 32 hex digits of a time-ordered UUID (v7, drawn by the
//! caller), so ids sort by creation and a studio list in key order is a list in creation
//! order.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdKind {
    Workspace,
    ComputeEnv,
    DataLink,
    Studio,
    Checkpoint,
}

impl IdKind {
    fn prefix(self) -> &'static str {
        match self {
            IdKind::Workspace => "ws-",
            IdKind::ComputeEnv => "ce-",
            IdKind::DataLink => "dl-",
            IdKind::Studio => "st-",
            IdKind::Checkpoint => "cp-",
        }
    }
}

/// The id of `kind` with this unique part (the caller draws it: a UUID v7 in production,
/// so ids sort by creation; the domain draws no randomness).
pub fn format_id(kind: IdKind, unique: u128) -> String {
    format!("{}{unique:032x}", kind.prefix())
}

/// Whether `s` could be an id of `kind` (ids that cannot exist answer 404 without a read).
pub fn is_well_formed(kind: IdKind, s: &str) -> bool {
    s.strip_prefix(kind.prefix()).is_some_and(|rest| {
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
    fn formatted_ids_are_well_formed_and_ordered() {
        let a = format_id(IdKind::Studio, 0x0193_0000_0000_7000_8000_0000_0000_0001);
        let b = format_id(IdKind::Studio, 0x0193_0000_0001_7000_8000_0000_0000_0001);
        assert!(is_well_formed(IdKind::Studio, &a));
        assert!(is_well_formed(
            IdKind::Studio,
            &format_id(IdKind::Studio, 1)
        ));
        assert!(!is_well_formed(IdKind::Workspace, &a));
        assert!(a < b);
        assert!(!is_well_formed(IdKind::Studio, "st-../../etc"));
    }
}
