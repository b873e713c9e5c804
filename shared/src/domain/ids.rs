//! Resource ids: a kind prefix and a time-ordered UUID (v7), so ids sort by creation
//! and a studio list in key order is a list in creation order.

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

pub fn new_id(kind: IdKind) -> String {
    format!("{}{}", kind.prefix(), uuid::Uuid::now_v7().simple())
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
    fn new_ids_are_well_formed_and_ordered() {
        let a = new_id(IdKind::Studio);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id(IdKind::Studio);
        assert!(is_well_formed(IdKind::Studio, &a));
        assert!(!is_well_formed(IdKind::Workspace, &a));
        assert!(a < b);
        assert!(!is_well_formed(IdKind::Studio, "st-../../etc"));
    }
}
