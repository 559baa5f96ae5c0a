//! Groups (SPEC 4.6): named filter expressions, stored durably in `groups.json` in the
//! store directory (replaced atomically: write, fsync, rename, fsync the directory).

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::Error;

const FILE: &str = "groups.json";
/// Region and account of locally made ARNs.
const ARN_PREFIX: &str = "arn:aws:xray:local:000000000000:group/";

/// A group: a name, an ARN and a filter expression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Group {
    pub group_name: String,
    #[serde(rename = "GroupARN")]
    pub group_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_expression: Option<String>,
    #[serde(default)]
    pub insights_configuration: InsightsConfiguration,
}

/// Kept for API shape; Tracelake has no insights.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InsightsConfiguration {
    pub insights_enabled: bool,
    pub notifications_enabled: bool,
}

#[derive(Debug)]
pub(crate) struct Groups {
    path: PathBuf,
    list: Mutex<Vec<Group>>,
}

fn invalid(msg: String) -> Error {
    Error::InvalidArgument(msg)
}

impl Groups {
    pub(crate) fn open(dir: &Path) -> Result<Groups, Error> {
        let path = dir.join(FILE);
        let list = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::Storage(tracelake_storage::Error::Corrupt {
                    what: format!("{}: {e}", path.display()),
                })
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(Error::Storage(tracelake_storage::Error::Io {
                    path: path.clone(),
                    source: e,
                }));
            }
        };
        Ok(Groups {
            path,
            list: Mutex::new(list),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Group>> {
        self.list.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn all(&self) -> Vec<Group> {
        self.lock().clone()
    }

    /// A group by name or ARN.
    pub(crate) fn get(&self, name_or_arn: &str) -> Option<Group> {
        self.lock()
            .iter()
            .find(|g| g.group_name == name_or_arn || g.group_arn == name_or_arn)
            .cloned()
    }

    /// The expression of a group, for `group.name` / `group.arn`.
    pub(crate) fn expression(&self, name_or_arn: &str, arn: bool) -> Option<String> {
        self.lock()
            .iter()
            .find(|g| {
                if arn {
                    g.group_arn == name_or_arn
                } else {
                    g.group_name == name_or_arn
                }
            })
            .map(|g| g.filter_expression.clone().unwrap_or_default())
    }

    /// Applies `change` to a copy of the list, validates with `check`, writes it, and
    /// only then makes it current.
    pub(crate) fn change<T>(
        &self,
        change: impl FnOnce(&mut Vec<Group>) -> Result<T, Error>,
        check: impl FnOnce(&[Group]) -> Result<(), Error>,
    ) -> Result<T, Error> {
        let mut list = self.lock();
        let mut next = list.clone();
        let out = change(&mut next)?;
        check(&next)?;
        self.write(&next)?;
        *list = next;
        Ok(out)
    }

    fn write(&self, list: &[Group]) -> Result<(), Error> {
        let io = |e: std::io::Error| {
            Error::Storage(tracelake_storage::Error::Io {
                path: self.path.clone(),
                source: e,
            })
        };
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(list)
            .map_err(|e| Error::InvalidArgument(format!("cannot encode groups: {e}")))?;
        let mut f = fs::File::create(&tmp).map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        fs::rename(&tmp, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent() {
            fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        Ok(())
    }
}

/// Checks a group name as CreateGroup does (1-32 characters, not `Default`).
pub(crate) fn check_name(name: &str) -> Result<(), Error> {
    let n = name.chars().count();
    if n == 0 || n > 32 {
        return Err(invalid(format!(
            "group name {name:?} must have 1 to 32 characters"
        )));
    }
    if name == "Default" {
        return Err(invalid("the group name \"Default\" is reserved".into()));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
    {
        return Err(invalid(format!(
            "group name {name:?} may hold letters, digits, '_', '-' and '.' only"
        )));
    }
    Ok(())
}

/// A new ARN for a group.
pub(crate) fn new_arn(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut x = (nanos as u64) ^ 0x9e37_79b9_7f4a_7c15;
    x = (x ^ (x >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    format!("{ARN_PREFIX}{name}/{x:016X}")
}

impl tracelake_query::GroupResolver for Groups {
    fn expression(&self, name_or_arn: &str, arn: bool) -> Option<String> {
        Groups::expression(self, name_or_arn, arn)
    }
}
