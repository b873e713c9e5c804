//! Mount locks (docs/storage.md, docs/architecture.md): only one running session per workspace may mount a path.
//!
//! Each mounted path gets an exclusive lock item; each of its ancestor prefixes gets an
//! "intent" (a string-set entry naming the session). A path can be locked only if its
//! item has neither holder nor intents (nothing at or below it is mounted) and no
//! ancestor has a holder (nothing above it is mounted). Adding and removing set entries
//! is idempotent, so releasing twice is harmless.

use super::s3::S3Prefix;
use std::collections::BTreeMap;

/// One lock item's part in a start (or release): hold it, and/or add intents to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockItem {
    pub path: S3Prefix,
    pub hold: bool,
    pub intents: Vec<String>,
}

/// Who holds a path: named in 409s and in `GET …/mounts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub studio_id: String,
    pub studio_name: String,
    pub path: S3Prefix,
}

/// A held mount (`GET …/mounts`).
#[derive(Clone, Debug, PartialEq)]
pub struct HeldMount {
    pub holder: Holder,
    pub since: String,
}

/// The intent entry a session leaves on an ancestor of `path`. It names the holder, so a
/// conflict can be explained from the item that blocked it without another read.
pub fn intent(studio_id: &str, attempt_id: &str, path: &S3Prefix, studio_name: &str) -> String {
    serde_json::json!([studio_id, attempt_id, path.as_str(), studio_name]).to_string()
}

pub fn parse_intent(entry: &str) -> Option<Holder> {
    let v: Vec<String> = serde_json::from_str(entry).ok()?;
    let [studio_id, _, path, studio_name] = <[String; 4]>::try_from(v).ok()?;
    Some(Holder {
        studio_id,
        studio_name,
        path: S3Prefix::parse(&path).ok()?,
    })
}

/// The lock items of a session mounting `paths` (which must not overlap each other),
/// one per distinct item: a transaction may touch each item once.
pub fn plan(
    studio_id: &str,
    attempt_id: &str,
    studio_name: &str,
    paths: &[S3Prefix],
) -> Vec<LockItem> {
    let mut items: BTreeMap<S3Prefix, LockItem> = BTreeMap::new();
    for path in paths {
        items
            .entry(path.clone())
            .or_insert_with(|| LockItem {
                path: path.clone(),
                hold: false,
                intents: vec![],
            })
            .hold = true;
        for ancestor in path.ancestors() {
            items
                .entry(ancestor.clone())
                .or_insert_with(|| LockItem {
                    path: ancestor,
                    hold: false,
                    intents: vec![],
                })
                .intents
                .push(intent(studio_id, attempt_id, path, studio_name));
        }
    }
    items.into_values().collect()
}

/// How many lock items mounting `paths` takes.
pub fn item_count(paths: &[&S3Prefix]) -> usize {
    let mut all: Vec<&str> = Vec::new();
    let ancestors: Vec<S3Prefix> = paths.iter().flat_map(|p| p.ancestors()).collect();
    all.extend(paths.iter().map(|p| p.as_str()));
    all.extend(ancestors.iter().map(S3Prefix::as_str));
    all.sort_unstable();
    all.dedup();
    all.len()
}

/// The in-memory meaning of the lock items (the store keeps the same rules with
/// conditions); used to test the rules (feature `local`).
#[cfg(any(test, feature = "local"))]
#[derive(Default, Debug, Clone)]
pub struct LockTable {
    holders: BTreeMap<S3Prefix, String>,
    intents: BTreeMap<S3Prefix, Vec<String>>,
}

#[cfg(any(test, feature = "local"))]
impl LockTable {
    /// Locks all items of `plan` or none; `Err` names the blocking path.
    pub fn acquire(&mut self, session: &str, plan: &[LockItem]) -> Result<(), S3Prefix> {
        for item in plan {
            if self.holders.contains_key(&item.path) {
                return Err(item.path.clone());
            }
            if item.hold && self.intents.get(&item.path).is_some_and(|i| !i.is_empty()) {
                return Err(item.path.clone());
            }
        }
        for item in plan {
            if item.hold {
                self.holders.insert(item.path.clone(), session.to_string());
            }
            self.intents
                .entry(item.path.clone())
                .or_default()
                .extend(item.intents.iter().cloned());
        }
        Ok(())
    }

    pub fn release(&mut self, session: &str, plan: &[LockItem]) {
        for item in plan {
            if item.hold && self.holders.get(&item.path).map(String::as_str) == Some(session) {
                self.holders.remove(&item.path);
            }
            if let Some(set) = self.intents.get_mut(&item.path) {
                set.retain(|i| !item.intents.contains(i));
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.holders.is_empty() && self.intents.values().all(Vec::is_empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> S3Prefix {
        S3Prefix::parse(s).unwrap()
    }

    #[test]
    fn a_plan_holds_each_path_and_marks_each_ancestor_once() {
        let items = plan("st-1", "a1", "S", &[p("s3://bkt/x/1/"), p("s3://bkt/y/")]);
        let summary: Vec<(String, bool, usize)> = items
            .iter()
            .map(|i| (i.path.to_string(), i.hold, i.intents.len()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("s3://bkt/".into(), false, 2),
                ("s3://bkt/x/".into(), false, 1),
                ("s3://bkt/x/1/".into(), true, 0),
                ("s3://bkt/y/".into(), true, 0),
            ]
        );
        assert_eq!(item_count(&[&p("s3://bkt/x/1/"), &p("s3://bkt/y/")]), 4);
    }

    #[test]
    fn intents_name_their_holder() {
        let entry = intent("st-1", "a1", &p("s3://bkt/x/"), "RNA \"QC\"");
        let h = parse_intent(&entry).unwrap();
        assert_eq!(h.studio_id, "st-1");
        assert_eq!(h.studio_name, "RNA \"QC\"");
        assert_eq!(h.path, p("s3://bkt/x/"));
        assert_eq!(parse_intent("garbage"), None);
    }

    fn path() -> impl Strategy<Value = S3Prefix> {
        (
            prop_oneof![Just("b1b"), Just("b2b")],
            prop::collection::vec(prop_oneof![Just("a"), Just("b"), Just("c")], 0..4),
        )
            .prop_map(|(bucket, segs)| p(&format!("s3://{bucket}/{}", segs.join("/"))))
    }

    proptest! {
        /// Sessions each mounting one path: a start succeeds iff its path overlaps no path
        /// held by a running session, and releasing everything leaves no lock behind.
        #[test]
        fn locks_admit_exactly_the_non_overlapping_sessions(
            paths in prop::collection::vec(path(), 1..8),
            stop_order in prop::collection::vec(any::<u8>(), 8),
        ) {
            let mut table = LockTable::default();
            let mut running: Vec<(String, S3Prefix, Vec<LockItem>)> = vec![];
            for (i, path) in paths.iter().enumerate() {
                let session = format!("st-{i}");
                let items = plan(&session, "a", "n", std::slice::from_ref(path));
                let overlaps = running.iter().any(|(_, held, _)| held.overlaps(path));
                let got = table.acquire(&session, &items);
                prop_assert_eq!(got.is_ok(), !overlaps, "{} vs {:?}", path, running.iter().map(|r| r.1.to_string()).collect::<Vec<_>>());
                if got.is_ok() {
                    running.push((session, path.clone(), items));
                }
                // Stop one running session now and then.
                if stop_order.get(i).is_some_and(|k| k % 3 == 0) && !running.is_empty() {
                    let (s, _, items) = running.remove(usize::from(stop_order[i]) % running.len());
                    table.release(&s, &items);
                    table.release(&s, &items); // twice: idempotent
                }
            }
            for (s, _, items) in running.drain(..) {
                table.release(&s, &items);
            }
            prop_assert!(table.is_empty());
        }
    }
}
