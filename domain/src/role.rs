//! Workspace roles and the permission table (docs/api.md).

use serde::{Deserialize, Serialize};

/// Ordered from least to most privileged; the order is the permission table.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    View,
    Connect,
    Launch,
    Maintain,
    Admin,
    Owner,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// List/view studios, checkpoints, mounts, and the workspace's members,
    /// compute environments and data links (needed to fill in a studio form).
    Read,
    /// Connect to a studio / copy its URL.
    Connect,
    /// Add, update, start, stop, clone, delete studios; rename checkpoints.
    OperateStudios,
    /// Manage members, compute environments and data links.
    Administer,
    /// Grant the owner role, or change or remove an owner.
    GrantOwner,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::View,
        Role::Connect,
        Role::Launch,
        Role::Maintain,
        Role::Admin,
        Role::Owner,
    ];

    pub fn allows(self, permission: Permission) -> bool {
        match permission {
            Permission::Read => true,
            Permission::Connect => self >= Role::Connect,
            Permission::OperateStudios => self >= Role::Maintain,
            Permission::Administer => self >= Role::Admin,
            Permission::GrantOwner => self == Role::Owner,
        }
    }

    /// Every role that holds `permission` (for a role condition inside a write).
    pub fn holders(permission: Permission) -> Vec<Role> {
        Role::ALL
            .into_iter()
            .filter(|r| r.allows(permission))
            .collect()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::View => "view",
            Role::Connect => "connect",
            Role::Launch => "launch",
            Role::Maintain => "maintain",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Permission::*;

    /// The table of docs/api.md, row by row: (role, read, connect, operate, administer, grant owner).
    const TABLE: [(Role, bool, bool, bool, bool, bool); 6] = [
        (Role::View, true, false, false, false, false),
        (Role::Connect, true, true, false, false, false),
        (Role::Launch, true, true, false, false, false),
        (Role::Maintain, true, true, true, false, false),
        (Role::Admin, true, true, true, true, false),
        (Role::Owner, true, true, true, true, true),
    ];

    #[test]
    fn permission_table_matches_the_design() {
        for (role, read, connect, operate, administer, grant) in TABLE {
            assert_eq!(role.allows(Read), read, "{role:?} read");
            assert_eq!(role.allows(Connect), connect, "{role:?} connect");
            assert_eq!(role.allows(OperateStudios), operate, "{role:?} operate");
            assert_eq!(role.allows(Administer), administer, "{role:?} administer");
            assert_eq!(role.allows(GrantOwner), grant, "{role:?} grant owner");
        }
    }

    #[test]
    fn holders_lists_exactly_the_allowed_roles() {
        assert_eq!(
            Role::holders(OperateStudios),
            vec![Role::Maintain, Role::Admin, Role::Owner]
        );
        assert_eq!(Role::holders(GrantOwner), vec![Role::Owner]);
        assert_eq!(Role::holders(Read).len(), 6);
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
            assert_eq!(
                serde_json::to_value(role).unwrap(),
                serde_json::json!(role.as_str())
            );
        }
        assert_eq!(Role::parse("Owner"), None);
        assert_eq!(Role::parse("superuser"), None);
    }
}
