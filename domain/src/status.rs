//! Studio status model (docs/architecture.md, "The status machine").

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StudioStatus {
    Stopped,
    Starting,
    Running,
    Stopping,
    Errored,
}

impl StudioStatus {
    pub const ALL: [StudioStatus; 5] = [
        StudioStatus::Stopped,
        StudioStatus::Starting,
        StudioStatus::Running,
        StudioStatus::Stopping,
        StudioStatus::Errored,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StudioStatus::Stopped => "stopped",
            StudioStatus::Starting => "starting",
            StudioStatus::Running => "running",
            StudioStatus::Stopping => "stopping",
            StudioStatus::Errored => "errored",
        }
    }

    pub fn parse(s: &str) -> Option<StudioStatus> {
        StudioStatus::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
    }

    /// Configuration can be changed, and the studio deleted, only while nothing runs.
    pub fn is_at_rest(self) -> bool {
        matches!(self, StudioStatus::Stopped | StudioStatus::Errored)
    }

    /// The statuses in which a studio is at rest (for conditional writes).
    pub fn at_rest() -> [StudioStatus; 2] {
        [StudioStatus::Stopped, StudioStatus::Errored]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stopped_and_errored_are_at_rest() {
        for s in StudioStatus::ALL {
            assert_eq!(
                s.is_at_rest(),
                StudioStatus::at_rest().contains(&s),
                "{s:?}"
            );
            assert_eq!(StudioStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(StudioStatus::parse("RUNNING"), Some(StudioStatus::Running));
        assert_eq!(StudioStatus::parse("paused"), None);
    }
}
