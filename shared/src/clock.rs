//! The clock and the id source. The domain reads neither (docs/architecture.md): the
//! use cases take `now` and new ids from here and pass them in.

use crate::domain::ids::{format_id, IdKind};

/// Now, as the domain's timestamps are written (RFC 3339 UTC, milliseconds).
pub fn now() -> String {
    crate::domain::timestamp(chrono::Utc::now())
}

/// How long ago a timestamp was (zero if it cannot be read: judged as new).
pub fn age(timestamp: &str) -> chrono::Duration {
    crate::domain::elapsed(timestamp, &now())
}

/// A new id of `kind`: time-ordered (UUID v7), so ids sort by creation.
pub fn new_id(kind: IdKind) -> String {
    format_id(kind, uuid::Uuid::now_v7().as_u128())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::is_well_formed;

    #[test]
    fn new_ids_are_well_formed_and_ordered() {
        let a = new_id(IdKind::Studio);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id(IdKind::Studio);
        assert!(is_well_formed(IdKind::Studio, &a));
        assert!(!is_well_formed(IdKind::Workspace, &a));
        assert!(a < b);
    }

    #[test]
    fn age_counts_from_a_written_timestamp() {
        let an_hour_ago = crate::domain::timestamp(chrono::Utc::now() - chrono::Duration::hours(1));
        assert_eq!(age(&an_hour_ago).num_minutes(), 60);
        assert_eq!(age("not a time"), chrono::Duration::zero());
    }
}
